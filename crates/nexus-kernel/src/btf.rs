//! A minimal BTF reader: enough to find a type id by kind and name, which is
//! what `fentry`/`fexit` (a `FUNC`) and `tp_btf` (the `btf_trace_<name>`
//! `TYPEDEF`) need for `attach_btf_id`.

use std::path::Path;
use std::sync::OnceLock;

/// Where the running kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BtfError {
    #[error("reading BTF from {path}: {message}")]
    Read { path: String, message: String },
    #[error("malformed BTF: {0}")]
    Malformed(String),
    #[error("no BTF {kind} named {name:?} in the kernel's BTF")]
    NotFound { kind: &'static str, name: String },
}

/// BTF kinds (`BTF_KIND_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BtfKind {
    Int = 1,
    Ptr = 2,
    Array = 3,
    Struct = 4,
    Union = 5,
    Enum = 6,
    Fwd = 7,
    Typedef = 8,
    Volatile = 9,
    Const = 10,
    Restrict = 11,
    Func = 12,
    FuncProto = 13,
    Var = 14,
    Datasec = 15,
    Float = 16,
    DeclTag = 17,
    TypeTag = 18,
    Enum64 = 19,
}

impl BtfKind {
    fn from_u8(k: u8) -> Option<BtfKind> {
        use BtfKind::*;
        Some(match k {
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => Datasec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }

    /// Bytes that follow the 12-byte common header for a type with `vlen` members.
    fn extra_len(self, vlen: usize) -> usize {
        use BtfKind::*;
        match self {
            Int | Var | DeclTag => 4,
            Array => 12,
            Struct | Union | Datasec | Enum64 => 12 * vlen,
            Enum | FuncProto => 8 * vlen,
            _ => 0,
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            BtfKind::Func => "FUNC",
            BtfKind::Typedef => "TYPEDEF",
            BtfKind::Struct => "STRUCT",
            BtfKind::Union => "UNION",
            BtfKind::Enum => "ENUM",
            BtfKind::Int => "INT",
            _ => "type",
        }
    }
}

/// One type's common header and where its kind-specific data starts.
#[derive(Clone, Copy, Debug)]
struct TypeEntry {
    kind: u8,
    name_off: u32,
    info: u32,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
    /// Offset of the kind-specific data in the type section.
    extra: u32,
}

impl TypeEntry {
    fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }
    fn kind_flag(&self) -> bool {
        self.info >> 31 != 0
    }
}

/// Parsed BTF: the string and type sections plus an index of type headers.
#[derive(Debug)]
pub struct Btf {
    strings: Vec<u8>,
    type_sec: Vec<u8>,
    /// Index `i` describes type id `i + 1`.
    types: Vec<TypeEntry>,
}

/// A kernel function parameter, as far as a tracer needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfParam {
    pub name: String,
    /// Size in bytes of the resolved type; 8 for pointers.
    pub size: u32,
    pub signed: bool,
    pub pointer: bool,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Btf {
    /// Parse raw BTF bytes (little-endian, as on x86_64).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let bad = |m: &str| BtfError::Malformed(m.to_string());
        if data.len() < 24 {
            return Err(bad("shorter than the BTF header"));
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        if magic != BTF_MAGIC {
            return Err(BtfError::Malformed(format!(
                "bad magic {magic:#06x} (big-endian BTF is not supported)"
            )));
        }
        let field = |off| {
            u32_at(data, off)
                .map(|v| v as usize)
                .ok_or_else(|| bad("truncated header"))
        };
        let hdr_len = field(4)?;
        let (type_off, type_len) = (field(8)?, field(12)?);
        let (str_off, str_len) = (field(16)?, field(20)?);
        let section = |off: usize, len: usize, what: &str| {
            let start = hdr_len.checked_add(off);
            let end = start.and_then(|s| s.checked_add(len));
            match (start, end) {
                (Some(s), Some(e)) if e <= data.len() => Ok(&data[s..e]),
                _ => Err(BtfError::Malformed(format!("{what} section out of bounds"))),
            }
        };
        let type_sec = section(type_off, type_len, "type")?;
        let strings = section(str_off, str_len, "string")?.to_vec();
        let mut types = Vec::new();
        let mut pos = 0;
        while pos < type_sec.len() {
            let (Some(name_off), Some(info), Some(size_or_type)) = (
                u32_at(type_sec, pos),
                u32_at(type_sec, pos + 4),
                u32_at(type_sec, pos + 8),
            ) else {
                return Err(bad("truncated type entry"));
            };
            let kind_raw = ((info >> 24) & 0x1f) as u8;
            let kind = BtfKind::from_u8(kind_raw).ok_or_else(|| {
                BtfError::Malformed(format!(
                    "unknown BTF kind {kind_raw} at type id {}",
                    types.len() + 1
                ))
            })?;
            let extra = pos + 12;
            pos = extra + kind.extra_len((info & 0xffff) as usize);
            if pos > type_sec.len() {
                return Err(bad("type entry runs past the type section"));
            }
            types.push(TypeEntry {
                kind: kind_raw,
                name_off,
                info,
                size_or_type,
                extra: extra as u32,
            });
        }
        Ok(Btf {
            strings,
            type_sec: type_sec.to_vec(),
            types,
        })
    }

    /// Read and parse a BTF file.
    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|e| BtfError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Btf::parse(&data)
    }

    /// Number of types (ids run from 1 to this).
    #[must_use]
    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    fn entry(&self, id: u32) -> Option<&TypeEntry> {
        self.types.get((id as usize).checked_sub(1)?)
    }

    fn name_bytes(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    fn str_at(&self, off: u32) -> Option<&str> {
        std::str::from_utf8(self.name_bytes(off))
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// The name of type `id`, if it has one.
    #[must_use]
    pub fn type_name(&self, id: u32) -> Option<&str> {
        self.str_at(self.entry(id)?.name_off)
    }

    /// The id of the first type of `kind` called `name`.
    pub fn find(&self, kind: BtfKind, name: &str) -> Result<u32, BtfError> {
        self.types
            .iter()
            .position(|t| t.kind == kind as u8 && self.name_bytes(t.name_off) == name.as_bytes())
            .map(|i| i as u32 + 1)
            .ok_or_else(|| BtfError::NotFound {
                kind: kind.name(),
                name: name.to_string(),
            })
    }

    /// Names of every type of `kind`, in id order (may repeat).
    pub fn names_of_kind(&self, kind: BtfKind) -> impl Iterator<Item = &str> + '_ {
        self.types
            .iter()
            .filter(move |t| t.kind == kind as u8)
            .filter_map(|t| self.str_at(t.name_off))
    }

    /// The parameters of function `name` (a `FUNC` whose type is a
    /// `FUNC_PROTO`), with typedefs and qualifiers resolved.
    pub fn func_params(&self, name: &str) -> Result<Vec<BtfParam>, BtfError> {
        let func = self.find(BtfKind::Func, name)?;
        let malformed = |what: &str| BtfError::Malformed(format!("function {name}: {what}"));
        let proto = self
            .entry(func)
            .and_then(|f| self.entry(f.size_or_type))
            .filter(|p| p.kind == BtfKind::FuncProto as u8)
            .ok_or_else(|| malformed("type is not a FUNC_PROTO"))?;
        let mut params = Vec::with_capacity(proto.vlen());
        for i in 0..proto.vlen() {
            let at = proto.extra as usize + i * 8;
            let (Some(name_off), Some(ty)) =
                (u32_at(&self.type_sec, at), u32_at(&self.type_sec, at + 4))
            else {
                return Err(malformed("truncated parameter list"));
            };
            // A trailing parameter of type 0 marks varargs: nothing to name.
            if ty == 0 {
                break;
            }
            let (size, signed, pointer) = self
                .scalar_shape(ty)
                .ok_or_else(|| malformed("unresolvable parameter type"))?;
            params.push(BtfParam {
                name: self
                    .str_at(name_off)
                    .map_or_else(|| format!("arg{i}"), str::to_string),
                size,
                signed,
                pointer,
            });
        }
        Ok(params)
    }

    /// (size, signed, pointer) of type `id` after following typedefs and
    /// qualifiers.
    fn scalar_shape(&self, mut id: u32) -> Option<(u32, bool, bool)> {
        // Chains are short; the bound only guards against malformed cycles.
        for _ in 0..64 {
            let t = self.entry(id)?;
            match BtfKind::from_u8(t.kind)? {
                BtfKind::Typedef
                | BtfKind::Volatile
                | BtfKind::Const
                | BtfKind::Restrict
                | BtfKind::TypeTag => id = t.size_or_type,
                BtfKind::Ptr => return Some((8, false, true)),
                BtfKind::Int => {
                    // INT data: bits 24..27 are the encoding, bit 0 of it SIGNED.
                    let encoding = (u32_at(&self.type_sec, t.extra as usize)? >> 24) & 0x0f;
                    return Some((t.size_or_type, encoding & 1 != 0, false));
                }
                BtfKind::Enum | BtfKind::Enum64 => {
                    return Some((t.size_or_type, t.kind_flag(), false));
                }
                BtfKind::Struct | BtfKind::Union | BtfKind::Float => {
                    return Some((t.size_or_type, false, false));
                }
                _ => return None,
            }
        }
        None
    }
}

/// The running kernel's BTF, parsed once per process.
pub fn vmlinux() -> Result<&'static Btf, BtfError> {
    static CACHE: OnceLock<Result<Btf, BtfError>> = OnceLock::new();
    CACHE
        .get_or_init(|| Btf::from_file(Path::new(VMLINUX_BTF)))
        .as_ref()
        .map_err(Clone::clone)
}

/// `attach_btf_id` for an `fentry`/`fexit` program on kernel function `func`.
pub fn func_id(func: &str) -> Result<u32, BtfError> {
    vmlinux()?.find(BtfKind::Func, func)
}

/// `attach_btf_id` for a `tp_btf` program on raw tracepoint `name`.
pub fn raw_tracepoint_id(name: &str) -> Result<u32, BtfError> {
    vmlinux()?.find(BtfKind::Typedef, &format!("btf_trace_{name}"))
}

/// Kernel functions with BTF (what fentry/fexit can name) matching `glob`,
/// sorted and deduplicated.
pub fn kernel_functions(glob: &str) -> Result<Vec<String>, BtfError> {
    let mut names: Vec<String> = vmlinux()?
        .names_of_kind(BtfKind::Func)
        .filter(|n| crate::tracefs::glob_match(glob, n))
        .map(str::to_string)
        .collect();
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// The parameters of kernel function `func` from vmlinux BTF.
pub fn kernel_function_params(func: &str) -> Result<Vec<BtfParam>, BtfError> {
    vmlinux()?.func_params(func)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build BTF with: 1 INT "int" (signed), 2 TYPEDEF "btf_trace_x" -> 1,
    /// 3 FUNC "f" -> 5, 4 PTR -> 1, 5 FUNC_PROTO (a: btf_trace_x, p: int *).
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0btf_trace_x\0f\0a\0p\0".to_vec();
        let mut types = Vec::new();
        let mut ty = |name: u32, kind: u32, vlen: u32, size: u32, extra: &[u8]| {
            types.extend_from_slice(&name.to_le_bytes());
            types.extend_from_slice(&((kind << 24) | vlen).to_le_bytes());
            types.extend_from_slice(&size.to_le_bytes());
            types.extend_from_slice(extra);
        };
        // INT data: byte 0 = 32 bits, byte 3 = encoding (1 = signed).
        ty(1, 1, 0, 4, &[32, 0, 0, 1]);
        ty(5, 8, 0, 1, &[]);
        ty(17, 12, 0, 5, &[]);
        ty(0, 2, 0, 1, &[]);
        let mut params = Vec::new();
        for (name, t) in [(19u32, 2u32), (21, 4)] {
            params.extend_from_slice(&name.to_le_bytes());
            params.extend_from_slice(&t.to_le_bytes());
        }
        ty(0, 13, 2, 1, &params);
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn finds_by_kind_and_name() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.type_count(), 5);
        let params = btf.func_params("f").unwrap();
        let want = |name: &str, size, signed, pointer| BtfParam {
            name: name.into(),
            size,
            signed,
            pointer,
        };
        assert_eq!(
            params,
            vec![want("a", 4, true, false), want("p", 8, false, true)]
        );
        assert_eq!(
            btf.names_of_kind(BtfKind::Func).collect::<Vec<_>>(),
            vec!["f"]
        );
        assert_eq!(btf.find(BtfKind::Typedef, "btf_trace_x").unwrap(), 2);
        assert_eq!(btf.find(BtfKind::Func, "f").unwrap(), 3);
        assert!(btf.find(BtfKind::Func, "int").is_err());
        assert_eq!(btf.type_name(1), Some("int"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"nonsense").is_err());
        let mut d = sample();
        d.truncate(40);
        assert!(Btf::parse(&d).is_err());
    }
}
