//! The compiler's value types, and how they map onto the Artifact's
//! layout [`Type`].

use crate::artifact::{Field, Type};

/// Default capacity of `str()` results and string variables (bpftrace's
/// `BPFTRACE_MAX_STRLEN` default).
pub const DEFAULT_STRLEN: u32 = 64;
/// Capacity of `comm`.
pub const COMM_LEN: u32 = 16;

/// Which address space an integer points into, when it is a pointer:
/// decides between `probe_read_user*` and `probe_read_kernel*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// Not known to be a pointer.
    None,
    /// A user-space address.
    User,
    /// A kernel address.
    Kernel,
}

/// The type of a value during checking and lowering.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ty {
    /// An integer; arithmetic happens in 64 bits.
    Int {
        /// Width.
        bits: u8,
        /// Signedness.
        signed: bool,
        /// Address space when it is a pointer.
        space: Space,
    },
    /// A string with a fixed capacity.
    Str(u32),
    /// A byte buffer with a fixed capacity.
    Buf(u32),
    /// Kernel symbol address.
    Ksym,
    /// User symbol address (+tgid).
    Usym,
    /// Kernel stack id.
    Kstack,
    /// User stack id (+tgid).
    Ustack,
    /// A tuple.
    Tuple(Vec<Ty>),
    /// No value (statements such as `printf`).
    Void,
}

impl Ty {
    /// A 64-bit signed integer (literals, arithmetic results).
    pub const I64: Ty = Ty::Int {
        bits: 64,
        signed: true,
        space: Space::None,
    };
    /// A 64-bit unsigned integer.
    pub const U64: Ty = Ty::Int {
        bits: 64,
        signed: false,
        space: Space::None,
    };

    /// An unsigned integer of `bits`.
    pub fn uint(bits: u8) -> Ty {
        Ty::Int {
            bits,
            signed: false,
            space: Space::None,
        }
    }

    /// True for integers.
    pub fn is_int(&self) -> bool {
        matches!(self, Ty::Int { .. })
    }

    /// True for signed integers.
    pub fn is_signed(&self) -> bool {
        matches!(self, Ty::Int { signed: true, .. })
    }

    /// True for values that live in memory rather than a register.
    pub fn is_mem(&self) -> bool {
        !matches!(self, Ty::Int { .. } | Ty::Ksym | Ty::Kstack | Ty::Void)
    }

    /// How the type reads in a diagnostic.
    pub fn describe(&self) -> String {
        match self {
            Ty::Int { bits, signed, .. } => format!("{}int{bits}", if *signed { "" } else { "u" }),
            Ty::Str(n) => format!("string[{n}]"),
            Ty::Buf(n) => format!("buffer[{n}]"),
            Ty::Ksym => "ksym".into(),
            Ty::Usym => "usym".into(),
            Ty::Kstack => "kstack".into(),
            Ty::Ustack => "ustack".into(),
            Ty::Tuple(t) => format!(
                "({})",
                t.iter().map(Ty::describe).collect::<Vec<_>>().join(", ")
            ),
            Ty::Void => "nothing".into(),
        }
    }

    /// The Artifact layout type (`None` for `Void`).
    pub fn layout(&self) -> Option<Type> {
        Some(match self {
            Ty::Int { bits, signed, .. } => Type::Int {
                bits: *bits,
                signed: *signed,
            },
            Ty::Str(n) => Type::Str { len: *n },
            Ty::Buf(n) => Type::Buf { len: *n },
            Ty::Ksym => Type::Ksym,
            Ty::Usym => Type::Usym,
            Ty::Kstack => Type::Kstack,
            Ty::Ustack => Type::Ustack,
            Ty::Tuple(elems) => {
                let (fields, size) =
                    layout_fields(elems.iter().enumerate().map(|(i, t)| (i.to_string(), t)))?;
                Type::Tuple { fields, size }
            }
            Ty::Void => return None,
        })
    }

    /// Bytes in keys, values and payloads.
    pub fn size(&self) -> u32 {
        self.layout().map_or(0, |t| t.size())
    }

    /// The common type of two values assigned to one place (a variable,
    /// a map key or value): integers widen, strings take the larger
    /// capacity; `None` when they cannot share a place.
    pub fn unify(&self, other: &Ty) -> Option<Ty> {
        match (self, other) {
            (
                Ty::Int {
                    bits: a,
                    signed: sa,
                    space,
                },
                Ty::Int {
                    bits: b,
                    signed: sb,
                    ..
                },
            ) => Some(Ty::Int {
                bits: (*a).max(*b),
                signed: *sa || *sb,
                space: *space,
            }),
            (Ty::Str(a), Ty::Str(b)) => Some(Ty::Str((*a).max(*b))),
            (Ty::Buf(a), Ty::Buf(b)) => Some(Ty::Buf((*a).max(*b))),
            (Ty::Tuple(a), Ty::Tuple(b)) if a.len() == b.len() => a
                .iter()
                .zip(b)
                .map(|(x, y)| x.unify(y))
                .collect::<Option<Vec<_>>>()
                .map(Ty::Tuple),
            (a, b) if a == b => Some(a.clone()),
            _ => None,
        }
    }
}

/// Lay named fields out back to back, each at its alignment; the total is
/// rounded up to 8. `None` if a field is `Void`.
pub fn layout_fields<'a>(
    fields: impl Iterator<Item = (String, &'a Ty)>,
) -> Option<(Vec<Field>, u32)> {
    let mut out = Vec::new();
    let mut off = 0u32;
    for (name, ty) in fields {
        let t = ty.layout()?;
        off = off.next_multiple_of(t.align());
        let size = t.size();
        out.push(Field {
            name,
            ty: t,
            offset: off,
        });
        off += size;
    }
    Some((out, off.next_multiple_of(8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_layout_aligns_ints_after_strings() {
        let t = Ty::Tuple(vec![Ty::Str(5), Ty::I64, Ty::Str(3)]);
        let Some(Type::Tuple { fields, size }) = t.layout() else {
            panic!("tuple expected");
        };
        let offs: Vec<u32> = fields.iter().map(|f| f.offset).collect();
        assert_eq!(offs, vec![0, 8, 16]);
        assert_eq!(size, 24);
    }

    #[test]
    fn unify_widens() {
        assert_eq!(Ty::uint(32).unify(&Ty::I64), Some(Ty::I64));
        assert_eq!(Ty::Str(16).unify(&Ty::Str(64)), Some(Ty::Str(64)));
        assert_eq!(Ty::Str(16).unify(&Ty::I64), None);
    }
}
