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

/// Parsed BTF: the string section plus (kind, name offset) per type id.
#[derive(Debug)]
pub struct Btf {
    strings: Vec<u8>,
    /// Index `i` describes type id `i + 1`.
    types: Vec<(u8, u32)>,
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
            let (Some(name_off), Some(info)) = (u32_at(type_sec, pos), u32_at(type_sec, pos + 4))
            else {
                return Err(bad("truncated type entry"));
            };
            let kind_raw = ((info >> 24) & 0x1f) as u8;
            let kind = BtfKind::from_u8(kind_raw).ok_or_else(|| {
                BtfError::Malformed(format!(
                    "unknown BTF kind {kind_raw} at type id {}",
                    types.len() + 1
                ))
            })?;
            let vlen = (info & 0xffff) as usize;
            pos += 12 + kind.extra_len(vlen);
            if pos > type_sec.len() {
                return Err(bad("type entry runs past the type section"));
            }
            types.push((kind_raw, name_off));
        }
        Ok(Btf { strings, types })
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

    fn name_bytes(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// The name of type `id`, if it has one.
    #[must_use]
    pub fn type_name(&self, id: u32) -> Option<&str> {
        let (_, off) = self.types.get((id as usize).checked_sub(1)?)?;
        std::str::from_utf8(self.name_bytes(*off))
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// The id of the first type of `kind` called `name`.
    pub fn find(&self, kind: BtfKind, name: &str) -> Result<u32, BtfError> {
        self.types
            .iter()
            .position(|&(k, off)| k == kind as u8 && self.name_bytes(off) == name.as_bytes())
            .map(|i| i as u32 + 1)
            .ok_or_else(|| BtfError::NotFound {
                kind: kind.name(),
                name: name.to_string(),
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Build BTF with: 1 INT "int", 2 TYPEDEF "btf_trace_x" -> 1, 3 FUNC "f".
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0btf_trace_x\0f\0".to_vec();
        let mut types = Vec::new();
        let mut ty = |name: u32, kind: u32, vlen: u32, size: u32, extra: &[u8]| {
            types.extend_from_slice(&name.to_le_bytes());
            types.extend_from_slice(&((kind << 24) | vlen).to_le_bytes());
            types.extend_from_slice(&size.to_le_bytes());
            types.extend_from_slice(extra);
        };
        ty(1, 1, 0, 4, &[0, 0, 0, 32]);
        ty(5, 8, 0, 1, &[]);
        ty(17, 12, 0, 0, &[]);
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
        assert_eq!(btf.type_count(), 3);
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
