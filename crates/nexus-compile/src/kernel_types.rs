//! Kernel struct types seen through BTF: what `curtask->real_parent->tgid`
//! and `((struct task_struct *)p)->comm` read.
//!
//! A BTF-typed value is `curtask` (a `struct task_struct *`), a cast to a
//! struct or union pointer, or a member of one. `->` on such a pointer
//! reads the member with `bpf_probe_read_kernel` at its offset; `.` on an
//! embedded struct only adds the offset. The member's type decides what
//! comes next: a pointer to a struct allows more `->`, an integer has its
//! size and signedness, a `char[N]` is a string.

use crate::catalog::{KernelMember, KernelType, ProbeCatalog};
use crate::ty::{Space, Ty};
use std::cell::RefCell;
use std::collections::HashMap;

/// A member lookup's answer: the member, `None` when unknown, or the
/// catalog's error message.
type Lookup = Result<Option<KernelMember>, String>;

/// Member lookups through the catalog, each asked once per compilation
/// (the kernel catalog streams vmlinux BTF for every question, and the
/// checker and lowering ask for the same members many times).
pub struct KernelTypes<'a> {
    catalog: &'a dyn ProbeCatalog,
    cache: RefCell<HashMap<(String, String), Lookup>>,
}

impl std::fmt::Debug for KernelTypes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The catalog is a trait object without Debug; the cache says
        // what was asked.
        f.debug_struct("KernelTypes")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl<'a> KernelTypes<'a> {
    /// Lookups answered by `catalog`.
    pub fn new(catalog: &'a dyn ProbeCatalog) -> Self {
        KernelTypes {
            catalog,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// Member `member` of struct/union `strukt`; `Err` is the catalog's
    /// message.
    pub fn member(&self, strukt: &str, member: &str) -> Lookup {
        let key = (strukt.to_string(), member.to_string());
        if let Some(hit) = self.cache.borrow().get(&key) {
            return hit.clone();
        }
        let found = self
            .catalog
            .struct_member_type(strukt, member)
            .map_err(|e| e.to_string());
        self.cache.borrow_mut().insert(key, found.clone());
        found
    }
}

/// The struct or union a cast like `(struct task_struct *)` points to.
pub fn cast_pointee(base: &str, pointer_depth: u8) -> Option<&str> {
    if pointer_depth != 1 {
        return None;
    }
    base.strip_prefix("struct ")
        .or_else(|| base.strip_prefix("union "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The value type of a member, `None` for one that is not a value
/// (an embedded struct, or a type bpfnexus cannot read).
pub fn value_ty(t: &KernelType) -> Option<Ty> {
    match t {
        KernelType::Int { size, signed } if matches!(size, 1 | 2 | 4 | 8) => Some(Ty::Int {
            bits: (*size * 8) as u8,
            signed: *signed,
            space: Space::None,
        }),
        KernelType::Pointer { .. } => Some(Ty::Int {
            bits: 64,
            signed: false,
            space: Space::Kernel,
        }),
        KernelType::CharArray { len } if *len > 0 => Some(Ty::Str(*len)),
        _ => None,
    }
}

/// How a member's type reads in a diagnostic.
pub fn describe(t: &KernelType) -> String {
    match t {
        KernelType::Int { size, signed } => {
            format!("{}int{}", if *signed { "" } else { "u" }, size * 8)
        }
        KernelType::Pointer {
            pointee: Some(name),
        } => format!("struct {name} *"),
        KernelType::Pointer { pointee: None } => "a pointer to no struct".into(),
        KernelType::CharArray { len } => format!("char[{len}]"),
        KernelType::Composite { name: Some(name) } => format!("struct {name}"),
        KernelType::Composite { name: None } => "an anonymous struct".into(),
        KernelType::Other => "a type bpfnexus cannot read".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::MemoryCatalog;

    #[test]
    fn casts_name_their_struct() {
        assert_eq!(cast_pointee("struct task_struct", 1), Some("task_struct"));
        assert_eq!(cast_pointee("union u", 1), Some("u"));
        assert_eq!(cast_pointee("struct task_struct", 2), None);
        assert_eq!(cast_pointee("uint64", 1), None);
    }

    #[test]
    fn members_map_to_value_types() {
        let c = MemoryCatalog::sample();
        let k = KernelTypes::new(&c);
        let ty = |m: &str| {
            k.member("task_struct", m)
                .unwrap()
                .and_then(|m| value_ty(&m.ty))
        };
        assert_eq!(
            ty("tgid"),
            Some(Ty::Int {
                bits: 32,
                signed: true,
                space: Space::None
            })
        );
        assert_eq!(ty("comm"), Some(Ty::Str(16)));
        assert_eq!(
            ty("real_parent"),
            Some(Ty::Int {
                bits: 64,
                signed: false,
                space: Space::Kernel
            })
        );
        assert_eq!(k.member("task_struct", "nope"), Ok(None));
        assert_eq!(value_ty(&KernelType::Composite { name: None }), None);
    }
}
