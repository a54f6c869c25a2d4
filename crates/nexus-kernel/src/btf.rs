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

/// Where a struct member lives: its offset and the size of its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtfMember {
    /// Offset from the start of the struct in bits (members of anonymous
    /// nested structs and unions included).
    pub bit_offset: u32,
    /// Bitfield width in bits; 0 for an ordinary member.
    pub bitfield_size: u32,
    /// Size in bytes of the member's type, typedefs and qualifiers followed.
    pub size: u32,
    /// BTF type id of the member (before typedefs and qualifiers), for
    /// [`MemberType`].
    pub type_id: u32,
}

/// What a struct member holds, as far as a tracer reads it: typedefs and
/// qualifiers followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberType {
    /// An integer or enum of `size` bytes.
    Int {
        /// Bytes.
        size: u32,
        /// Signedness.
        signed: bool,
    },
    /// A pointer; `pointee` names the struct or union it points to, when it
    /// points to a named one (`None` for `void *`, `int *`, ...).
    Pointer {
        /// Struct/union name.
        pointee: Option<String>,
    },
    /// A `char[len]` (any 1-byte integer element): a string.
    CharArray {
        /// Elements.
        len: u32,
    },
    /// An embedded struct or union, by name when it has one.
    Composite {
        /// Struct/union name.
        name: Option<String>,
    },
    /// Anything else (other arrays, floats, function pointers).
    Other,
}

/// Random access to BTF types, whether parsed in memory ([`Btf`]) or read
/// on demand from a file ([`BtfFile`]).
trait TypeSource {
    /// The header of type `id`.
    fn type_entry(&self, id: u32) -> Option<TypeEntry>;
    /// A `u32` at `off` in the type section.
    fn type_u32(&self, off: usize) -> Option<u32>;
    /// True when the string at `off` is exactly `name`.
    fn name_is(&self, off: u32, name: &[u8]) -> bool;
    /// The string at `off` (`None` when empty or unreadable).
    fn name_at(&self, off: u32) -> Option<String>;
}

impl TypeSource for Btf {
    fn type_entry(&self, id: u32) -> Option<TypeEntry> {
        self.entry(id).copied()
    }
    fn type_u32(&self, off: usize) -> Option<u32> {
        u32_at(&self.type_sec, off)
    }
    fn name_is(&self, off: u32, name: &[u8]) -> bool {
        self.name_bytes(off) == name
    }
    fn name_at(&self, off: u32) -> Option<String> {
        self.str_at(off)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }
}

impl Btf {
    /// Member `member` of `struct strukt` (or `union strukt`), looked up
    /// through anonymous nested structs and unions as C would.
    pub fn struct_member(&self, strukt: &str, member: &str) -> Result<BtfMember, BtfError> {
        let id = self
            .find(BtfKind::Struct, strukt)
            .or_else(|_| self.find(BtfKind::Union, strukt))?;
        find_member(self, id, strukt, member)
    }

    /// What the type with id `type_id` (a [`BtfMember::type_id`]) holds.
    pub fn member_type(&self, type_id: u32) -> MemberType {
        member_type(self, type_id)
    }
}

/// What type `id` holds, typedefs and qualifiers followed.
fn member_type(src: &impl TypeSource, id: u32) -> MemberType {
    let id = strip_modifiers(src, id);
    let Some(t) = src.type_entry(id) else {
        return MemberType::Other;
    };
    let named = |id: u32| {
        let t = src.type_entry(id)?;
        matches!(
            BtfKind::from_u8(t.kind)?,
            BtfKind::Struct | BtfKind::Union | BtfKind::Fwd
        )
        .then(|| src.name_at(t.name_off))
        .flatten()
    };
    match BtfKind::from_u8(t.kind) {
        Some(BtfKind::Int) => {
            // INT data: bits 24..27 are the encoding, bit 0 of it SIGNED.
            let encoding = src
                .type_u32(t.extra as usize)
                .map_or(0, |e| (e >> 24) & 0x0f);
            MemberType::Int {
                size: t.size_or_type,
                signed: encoding & 1 != 0,
            }
        }
        Some(BtfKind::Enum | BtfKind::Enum64) => MemberType::Int {
            size: t.size_or_type,
            signed: t.kind_flag(),
        },
        Some(BtfKind::Ptr) => MemberType::Pointer {
            pointee: named(strip_modifiers(src, t.size_or_type)),
        },
        Some(BtfKind::Array) => {
            // ARRAY data: element type, index type, element count.
            let elem = src.type_u32(t.extra as usize).unwrap_or(0);
            let len = src.type_u32(t.extra as usize + 8).unwrap_or(0);
            match member_type(src, elem) {
                MemberType::Int { size: 1, .. } => MemberType::CharArray { len },
                _ => MemberType::Other,
            }
        }
        Some(BtfKind::Struct | BtfKind::Union) => MemberType::Composite {
            name: src.name_at(t.name_off),
        },
        _ => MemberType::Other,
    }
}

/// Member `member` of the struct/union with type id `id`.
fn find_member(
    src: &impl TypeSource,
    id: u32,
    strukt: &str,
    member: &str,
) -> Result<BtfMember, BtfError> {
    member_in(src, id, member, 0, 0).ok_or_else(|| BtfError::NotFound {
        kind: "member",
        name: format!("{strukt}.{member}"),
    })?
}

/// Search composite type `id` (whose start is `base` bits into the outer
/// struct) for `member`. `None`: not there; `Some(Err)`: found but
/// malformed.
fn member_in(
    src: &impl TypeSource,
    id: u32,
    member: &str,
    base: u32,
    depth: u32,
) -> Option<Result<BtfMember, BtfError>> {
    // Real nesting is a few levels; the bound guards malformed cycles.
    if depth > 32 {
        return None;
    }
    let t = src.type_entry(id)?;
    if !matches!(BtfKind::from_u8(t.kind)?, BtfKind::Struct | BtfKind::Union) {
        return None;
    }
    for i in 0..t.vlen() {
        let at = t.extra as usize + i * 12;
        let (Some(name_off), Some(ty), Some(raw_off)) =
            (src.type_u32(at), src.type_u32(at + 4), src.type_u32(at + 8))
        else {
            return Some(Err(BtfError::Malformed(format!(
                "type id {id}: truncated member list"
            ))));
        };
        // With kind_flag set, the offset word packs the bitfield size in
        // its top byte.
        let (bit_offset, bitfield_size) = if t.kind_flag() {
            (raw_off & 0x00ff_ffff, raw_off >> 24)
        } else {
            (raw_off, 0)
        };
        if name_off == 0 || src.name_is(name_off, b"") {
            // An anonymous struct/union: its members belong to us.
            let inner = strip_modifiers(src, ty);
            if let Some(found) = member_in(src, inner, member, base + bit_offset, depth + 1) {
                return Some(found);
            }
            continue;
        }
        if !src.name_is(name_off, member.as_bytes()) {
            continue;
        }
        return Some(
            type_size(src, ty, 0)
                .map(|size| BtfMember {
                    bit_offset: base + bit_offset,
                    bitfield_size,
                    size,
                    type_id: ty,
                })
                .ok_or_else(|| {
                    BtfError::Malformed(format!("member {member}: type {ty} has no size"))
                }),
        );
    }
    None
}

/// Follow typedefs and qualifiers to the underlying type id.
fn strip_modifiers(src: &impl TypeSource, mut id: u32) -> u32 {
    // Chains are short; the bound only guards against malformed cycles.
    for _ in 0..64 {
        let Some(t) = src.type_entry(id) else {
            return id;
        };
        match BtfKind::from_u8(t.kind) {
            Some(
                BtfKind::Typedef
                | BtfKind::Volatile
                | BtfKind::Const
                | BtfKind::Restrict
                | BtfKind::TypeTag,
            ) => id = t.size_or_type,
            _ => return id,
        }
    }
    id
}

/// Size in bytes of type `id` (arrays multiply out), `None` for types
/// without a size (`void`, functions, forward declarations).
fn type_size(src: &impl TypeSource, id: u32, depth: u32) -> Option<u32> {
    if depth > 32 {
        return None;
    }
    let id = strip_modifiers(src, id);
    let t = src.type_entry(id)?;
    match BtfKind::from_u8(t.kind)? {
        BtfKind::Ptr => Some(8),
        BtfKind::Int
        | BtfKind::Enum
        | BtfKind::Enum64
        | BtfKind::Struct
        | BtfKind::Union
        | BtfKind::Float => Some(t.size_or_type),
        BtfKind::Array => {
            // ARRAY data: element type, index type, element count.
            let elem = src.type_u32(t.extra as usize)?;
            let n = src.type_u32(t.extra as usize + 8)?;
            type_size(src, elem, depth + 1)?.checked_mul(n)
        }
        _ => None,
    }
}

/// A BTF file read on demand: one streaming pass indexes where each type
/// starts and finds a struct by name; everything else is `pread`. Looking
/// up a member of the kernel's 5 MB BTF this way keeps well under a
/// megabyte resident, where [`Btf::parse`] holds all of it (twice while
/// parsing) — the difference between meeting and missing a small RSS
/// budget for a `-c` run that only needs `task_struct.tgid`.
struct BtfFile {
    file: std::fs::File,
    /// File offsets of the type and string sections.
    type_base: u64,
    str_base: u64,
    str_len: u32,
    /// Type-section offset of type id `i + 1`.
    offsets: Vec<u32>,
}

/// Chunk size of the streaming passes.
const CHUNK: usize = 64 * 1024;

impl BtfFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buf, off)
    }

    /// Open `path`, index its types, and return the id of the first struct
    /// or union called `name` with the reader.
    fn open_for(path: &Path, name: &str) -> Result<(BtfFile, Option<u32>), BtfError> {
        use std::io::{BufReader, Read, Seek, SeekFrom};
        let read_err = |e: std::io::Error| BtfError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let bad = |m: &str| BtfError::Malformed(m.to_string());
        let mut file = std::fs::File::open(path).map_err(read_err)?;
        let mut hdr = [0u8; 24];
        file.read_exact(&mut hdr).map_err(read_err)?;
        if u16::from_le_bytes([hdr[0], hdr[1]]) != BTF_MAGIC {
            return Err(bad("bad magic (big-endian BTF is not supported)"));
        }
        let field = |off| u64::from(u32_at(&hdr, off).unwrap_or(0));
        let hdr_len = field(4);
        let (type_off, type_len) = (field(8), field(12));
        let (str_off, str_len) = (field(16), field(20));
        let mut btf = BtfFile {
            file,
            type_base: hdr_len + type_off,
            str_base: hdr_len + str_off,
            str_len: u32::try_from(str_len).map_err(|_| bad("string section too large"))?,
            offsets: Vec::new(),
        };
        let names = btf.string_offsets(name).map_err(read_err)?;
        // Index the type section in one buffered pass.
        let mut f = btf.file.try_clone().map_err(read_err)?;
        f.seek(SeekFrom::Start(btf.type_base)).map_err(read_err)?;
        let mut r = BufReader::with_capacity(CHUNK, f.take(type_len));
        let mut pos: u64 = 0;
        let mut found = None;
        let mut head = [0u8; 12];
        while pos < type_len {
            r.read_exact(&mut head)
                .map_err(|_| bad("truncated type entry"))?;
            let (name_off, info) = (u32_at(&head, 0).unwrap_or(0), u32_at(&head, 4).unwrap_or(0));
            let kind_raw = ((info >> 24) & 0x1f) as u8;
            let kind = BtfKind::from_u8(kind_raw)
                .ok_or_else(|| BtfError::Malformed(format!("unknown BTF kind {kind_raw}")))?;
            btf.offsets
                .push(u32::try_from(pos).map_err(|_| bad("type section too large"))?);
            if found.is_none()
                && matches!(kind, BtfKind::Struct | BtfKind::Union)
                && names.contains(&name_off)
            {
                found = Some(btf.offsets.len() as u32);
            }
            let extra = kind.extra_len((info & 0xffff) as usize);
            r.seek_relative(extra as i64).map_err(read_err)?;
            pos += 12 + extra as u64;
        }
        Ok((btf, found))
    }

    /// String-section offsets of every string exactly equal to `name`.
    fn string_offsets(&self, name: &str) -> std::io::Result<Vec<u32>> {
        // Strings are NUL-separated and the section starts with one, so
        // `\0name\0` at stream position q is the string at q + 1.
        let mut needle = vec![0u8];
        needle.extend_from_slice(name.as_bytes());
        needle.push(0);
        let total = u64::from(self.str_len);
        let mut out = Vec::new();
        let mut buf = vec![0u8; CHUNK + needle.len()];
        let mut start: u64 = 0;
        while start < total {
            // Chunks overlap by the needle's length so no match is split.
            let len = (total - start).min((CHUNK + needle.len()) as u64) as usize;
            self.read_at(&mut buf[..len], self.str_base + start)?;
            for (i, w) in buf[..len].windows(needle.len()).enumerate() {
                if w == needle.as_slice() {
                    out.push((start + i as u64 + 1) as u32);
                }
            }
            start += CHUNK as u64;
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

impl TypeSource for BtfFile {
    fn type_entry(&self, id: u32) -> Option<TypeEntry> {
        let off = *self.offsets.get((id as usize).checked_sub(1)?)?;
        let mut head = [0u8; 12];
        self.read_at(&mut head, self.type_base + u64::from(off))
            .ok()?;
        let info = u32_at(&head, 4)?;
        Some(TypeEntry {
            kind: ((info >> 24) & 0x1f) as u8,
            name_off: u32_at(&head, 0)?,
            info,
            size_or_type: u32_at(&head, 8)?,
            extra: off + 12,
        })
    }
    fn type_u32(&self, off: usize) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read_at(&mut b, self.type_base + off as u64).ok()?;
        Some(u32::from_le_bytes(b))
    }
    fn name_is(&self, off: u32, name: &[u8]) -> bool {
        if u64::from(off) + name.len() as u64 >= u64::from(self.str_len) {
            return false;
        }
        let mut b = vec![0u8; name.len() + 1];
        self.read_at(&mut b, self.str_base + u64::from(off)).is_ok()
            && &b[..name.len()] == name
            && b[name.len()] == 0
    }
    fn name_at(&self, off: u32) -> Option<String> {
        // Kernel type names are short; longer ones are cut, not misread.
        let len = (u64::from(self.str_len).checked_sub(u64::from(off))?).min(256) as usize;
        let mut b = vec![0u8; len];
        self.read_at(&mut b, self.str_base + u64::from(off)).ok()?;
        let end = b.iter().position(|&c| c == 0)?;
        (end > 0).then(|| String::from_utf8_lossy(&b[..end]).into_owned())
    }
}

/// Member `member` of `struct strukt` in the BTF file at `path`, read
/// without loading the file (see [`BtfFile`]).
pub fn file_struct_member(path: &Path, strukt: &str, member: &str) -> Result<BtfMember, BtfError> {
    let (btf, id) = BtfFile::open_for(path, strukt)?;
    let id = id.ok_or_else(|| BtfError::NotFound {
        kind: "STRUCT",
        name: strukt.to_string(),
    })?;
    find_member(&btf, id, strukt, member)
}

/// Member `member` of `struct strukt` in the BTF file at `path` and what
/// it holds, in one streamed pass (see [`BtfFile`]).
pub fn file_struct_member_type(
    path: &Path,
    strukt: &str,
    member: &str,
) -> Result<(BtfMember, MemberType), BtfError> {
    let (btf, id) = BtfFile::open_for(path, strukt)?;
    let id = id.ok_or_else(|| BtfError::NotFound {
        kind: "STRUCT",
        name: strukt.to_string(),
    })?;
    let m = find_member(&btf, id, strukt, member)?;
    Ok((m, member_type(&btf, m.type_id)))
}

/// [`file_struct_member_type`] on vmlinux BTF.
pub fn kernel_struct_member_type(
    strukt: &str,
    member: &str,
) -> Result<(BtfMember, MemberType), BtfError> {
    file_struct_member_type(Path::new(VMLINUX_BTF), strukt, member)
}

/// Member `member` of kernel `struct strukt` from vmlinux BTF (streamed
/// from the file, so a lookup does not make the process hold the BTF).
pub fn kernel_struct_member(strukt: &str, member: &str) -> Result<BtfMember, BtfError> {
    file_struct_member(Path::new(VMLINUX_BTF), strukt, member)
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
        blob(&types, &strings)
    }

    /// A BTF file: header (version 1, 24 bytes), then the type and string
    /// sections back to back.
    fn blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
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
        out.extend_from_slice(types);
        out.extend_from_slice(strings);
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

    /// BTF for `struct task { int pid; struct { int tgid; }; char comm[16];
    /// unsigned flags:3, mode:5; }` (with `typedef int pid_t` on `tgid`).
    fn task_btf() -> Vec<u8> {
        let strings = b"\0int\0task\0pid\0tgid\0comm\0char\0pid_t\0flags\0mode\0".to_vec();
        let off = |name: &str| {
            let needle = format!("\0{name}\0");
            (strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap()
                + 1) as u32
        };
        let mut types = Vec::new();
        let mut ty = |name: u32, kind: u32, vlen: u32, flag: bool, size: u32, extra: &[u8]| {
            types.extend_from_slice(&name.to_le_bytes());
            let info = (u32::from(flag) << 31) | (kind << 24) | vlen;
            types.extend_from_slice(&info.to_le_bytes());
            types.extend_from_slice(&size.to_le_bytes());
            types.extend_from_slice(extra);
        };
        let member = |name: u32, t: u32, off: u32| {
            [name.to_le_bytes(), t.to_le_bytes(), off.to_le_bytes()].concat()
        };
        // 1 int, 2 char, 3 pid_t -> 1, 4 char[16], 5 anon struct { pid_t tgid },
        // 6 const -> 5, 7 struct task (kind_flag: bitfields).
        ty(off("int"), 1, 0, false, 4, &[32, 0, 0, 1]);
        ty(off("char"), 1, 0, false, 1, &[8, 0, 0, 2]);
        ty(off("pid_t"), 8, 0, false, 1, &[]);
        let arr = [2u32.to_le_bytes(), 1u32.to_le_bytes(), 16u32.to_le_bytes()].concat();
        ty(0, 3, 0, false, 0, &arr);
        ty(0, 4, 1, false, 4, &member(off("tgid"), 3, 0));
        ty(0, 10, 0, false, 5, &[]);
        let members = [
            member(off("pid"), 1, 0),
            member(0, 6, 32),
            member(off("comm"), 4, 64),
            member(off("flags"), 1, (3 << 24) | 192),
            member(off("mode"), 1, (5 << 24) | 195),
        ]
        .concat();
        ty(off("task"), 4, 5, true, 28, &members);
        blob(&types, &strings)
    }

    #[test]
    fn struct_members_through_anonymous_structs_and_typedefs() {
        let btf = Btf::parse(&task_btf()).unwrap();
        let m = |name: &str| btf.struct_member("task", name).unwrap();
        let shape = |m: BtfMember| (m.bit_offset, m.bitfield_size, m.size);
        let want = |bit_offset, bitfield_size, size| (bit_offset, bitfield_size, size);
        assert_eq!(shape(m("pid")), want(0, 0, 4));
        assert_eq!(shape(m("tgid")), want(32, 0, 4));
        assert_eq!(shape(m("comm")), want(64, 0, 16));
        assert_eq!(shape(m("flags")), want(192, 3, 4));
        assert_eq!(shape(m("mode")), want(195, 5, 4));
        // The streaming reader agrees.
        let path = std::env::temp_dir().join(format!("nexus-btf-{}", std::process::id()));
        std::fs::write(&path, task_btf()).unwrap();
        for name in ["pid", "tgid", "comm", "flags", "mode"] {
            assert_eq!(
                file_struct_member(&path, "task", name).unwrap(),
                m(name),
                "{name}"
            );
        }
        assert!(file_struct_member(&path, "task", "nope").is_err());
        assert!(file_struct_member(&path, "nostruct", "pid").is_err());
        let _ = std::fs::remove_file(&path);
        let missing = btf.struct_member("task", "nope").unwrap_err();
        assert!(missing.to_string().contains("task.nope"), "{missing}");
        assert!(btf.struct_member("nostruct", "pid").is_err());
    }

    #[test]
    fn member_types_follow_typedefs_and_arrays() {
        let btf = Btf::parse(&task_btf()).unwrap();
        let t = |name: &str| btf.member_type(btf.struct_member("task", name).unwrap().type_id);
        let int = MemberType::Int {
            size: 4,
            signed: true,
        };
        assert_eq!(t("pid"), int);
        assert_eq!(t("tgid"), int);
        assert_eq!(t("comm"), MemberType::CharArray { len: 16 });
        // The streaming reader agrees.
        let path = std::env::temp_dir().join(format!("nexus-btf-types-{}", std::process::id()));
        std::fs::write(&path, task_btf()).unwrap();
        for name in ["pid", "tgid", "comm"] {
            let (_, ty) = file_struct_member_type(&path, "task", name).unwrap();
            assert_eq!(ty, t(name), "{name}");
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn vmlinux_task_struct_member_types() {
        // Only where BTF is exposed.
        let Ok((_, parent)) = kernel_struct_member_type("task_struct", "real_parent") else {
            return;
        };
        assert_eq!(
            parent,
            MemberType::Pointer {
                pointee: Some("task_struct".into())
            }
        );
        let (m, tgid) = kernel_struct_member_type("task_struct", "tgid").unwrap();
        assert_eq!(m.size, 4);
        assert_eq!(
            tgid,
            MemberType::Int {
                size: 4,
                signed: true
            }
        );
        let (_, comm) = kernel_struct_member_type("task_struct", "comm").unwrap();
        assert_eq!(comm, MemberType::CharArray { len: 16 });
    }

    #[test]
    fn vmlinux_task_struct_tgid() {
        // The real kernel's layout: only where BTF is exposed.
        let Ok(btf) = vmlinux() else {
            eprintln!("skipping: no {VMLINUX_BTF}");
            return;
        };
        let pid = btf.struct_member("task_struct", "pid").unwrap();
        let tgid = btf.struct_member("task_struct", "tgid").unwrap();
        assert_eq!((pid.size, tgid.size), (4, 4));
        assert_eq!(pid.bit_offset % 8, 0);
        assert_eq!(tgid.bit_offset, pid.bit_offset + 32);
        assert_eq!(kernel_struct_member("task_struct", "tgid").unwrap(), tgid);
        assert_eq!(
            kernel_struct_member("task_struct", "comm").unwrap(),
            btf.struct_member("task_struct", "comm").unwrap()
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"nonsense").is_err());
        let mut d = sample();
        d.truncate(40);
        assert!(Btf::parse(&d).is_err());
    }
}
