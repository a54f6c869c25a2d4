//! BPF maps: create, lookup, update, delete, iterate, per-CPU reads, batch
//! reads, queue/stack push and pop. A [`Map`] owns its file descriptor, so
//! dropping it releases the map (once no program references it either).

use crate::cpu;
use crate::sys::{self, BpfAttr, BpfCmd};
use nexus_insn::MapType;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// The kernel-internal `ENOTSUPP`, which some map commands leak to user space.
const ENOTSUPP: i32 = 524;
/// `BPF_OBJ_NAME_LEN`: names are truncated to 15 bytes plus NUL.
const OBJ_NAME_LEN: usize = 16;

/// Errors from map operations. Every variant names the map and the call.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("creating {map_type} map {name:?} failed: {source}")]
    Create {
        name: String,
        map_type: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{op} on map {name:?} failed: {source}")]
    Syscall {
        op: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("map {name:?}: {what} is {got} bytes, the map expects {expected}")]
    Size {
        name: String,
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("map {name:?} is a {map_type} map, which does not support {op}")]
    Unsupported {
        name: String,
        map_type: &'static str,
        op: &'static str,
    },
    #[error("reading the possible CPU list for per-CPU map values failed: {0}")]
    Cpus(#[source] io::Error),
}

impl MapError {
    /// The errno the kernel returned, if this error came from a syscall.
    #[must_use]
    pub fn errno(&self) -> Option<i32> {
        match self {
            MapError::Create { source, .. } | MapError::Syscall { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }
}

/// How an update treats an existing key (`BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u64)]
pub enum UpdateFlags {
    /// Create or replace.
    #[default]
    Any = 0,
    /// Create only; `EEXIST` if the key is present.
    NoExist = 1,
    /// Replace only; `ENOENT` if the key is absent.
    Exist = 2,
}

/// A declarative description of a map to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// Truncated to 15 bytes for the kernel; non-alphanumeric bytes other
    /// than `_` and `.` become `_` (the kernel rejects them).
    pub name: String,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    /// For ring buffers: the data size in bytes (a power-of-two multiple of the page size).
    pub max_entries: u32,
    /// `BPF_F_*` map flags.
    pub flags: u32,
}

impl MapSpec {
    #[must_use]
    pub fn new(
        name: &str,
        map_type: MapType,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> Self {
        MapSpec {
            name: name.to_string(),
            map_type,
            key_size,
            value_size,
            max_entries,
            flags: 0,
        }
    }

    /// A ring buffer of `size` bytes (rounded up to a power of two, at least one page).
    #[must_use]
    pub fn ringbuf(name: &str, size: u32) -> Self {
        let page = sys::page_size() as u32;
        let size = size
            .max(page)
            .checked_next_power_of_two()
            .unwrap_or(1 << 31);
        MapSpec::new(name, MapType::Ringbuf, 0, 0, size)
    }

    /// A stack-trace map holding up to `max_entries` stacks of `depth` frames.
    #[must_use]
    pub fn stack_trace(name: &str, depth: u32, max_entries: u32) -> Self {
        MapSpec::new(name, MapType::StackTrace, 4, depth * 8, max_entries)
    }
}

/// The bytes the kernel accepts as an object name.
pub(crate) fn obj_name(name: &str) -> [u8; OBJ_NAME_LEN] {
    let mut out = [0u8; OBJ_NAME_LEN];
    for (o, b) in out.iter_mut().zip(name.bytes().take(OBJ_NAME_LEN - 1)) {
        *o = if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' {
            b
        } else {
            b'_'
        };
    }
    out
}

/// One key/value pair read from a map. For per-CPU maps `value` holds every
/// CPU's slot back to back; split it with [`Map::percpu_slots`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// A BPF map the process owns.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    name: String,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    /// Number of per-CPU slots (1 for shared maps).
    slots: usize,
}

impl Map {
    /// `BPF_MAP_CREATE`.
    pub fn create(spec: &MapSpec) -> Result<Map, MapError> {
        let slots = if spec.map_type.is_percpu() {
            cpu::possible_cpu_count().map_err(MapError::Cpus)?
        } else {
            1
        };
        let mut attr = BpfAttr::new();
        attr.set_u32(0, spec.map_type as u32)
            .set_u32(4, spec.key_size)
            .set_u32(8, spec.value_size)
            .set_u32(12, spec.max_entries)
            .set_u32(16, spec.flags)
            .set_bytes(28, &obj_name(&spec.name));
        let fd = sys::bpf_fd(BpfCmd::MapCreate, &mut attr).map_err(|source| MapError::Create {
            name: spec.name.clone(),
            map_type: spec.map_type.name(),
            source,
        })?;
        Ok(Map {
            fd,
            name: spec.name.clone(),
            map_type: spec.map_type,
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            slots,
        })
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
    #[must_use]
    pub fn map_type(&self) -> MapType {
        self.map_type
    }
    #[must_use]
    pub fn key_size(&self) -> u32 {
        self.key_size
    }
    #[must_use]
    pub fn value_size(&self) -> u32 {
        self.value_size
    }
    #[must_use]
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// Number of per-CPU value slots (1 for maps that are not per-CPU).
    #[must_use]
    pub fn cpu_slots(&self) -> usize {
        self.slots
    }

    /// Bytes of one value as the syscalls read it: for per-CPU maps the value
    /// size rounded up to 8, times the number of possible CPUs.
    #[must_use]
    pub fn syscall_value_len(&self) -> usize {
        if self.map_type.is_percpu() {
            (self.value_size as usize).next_multiple_of(8) * self.slots
        } else {
            self.value_size as usize
        }
    }

    /// Split a per-CPU value read from this map into one slice per CPU
    /// (each `value_size` bytes). For other maps it yields the value itself.
    #[must_use]
    pub fn percpu_slots<'a>(&self, raw: &'a [u8]) -> Vec<&'a [u8]> {
        if !self.map_type.is_percpu() {
            return vec![raw];
        }
        let stride = (self.value_size as usize).next_multiple_of(8);
        if stride == 0 {
            return Vec::new();
        }
        raw.chunks(stride)
            .map(|c| &c[..c.len().min(self.value_size as usize)])
            .collect()
    }

    fn syscall_err(&self, op: &'static str) -> impl FnOnce(io::Error) -> MapError + '_ {
        move |source| MapError::Syscall {
            op,
            name: self.name.clone(),
            source,
        }
    }

    fn check(&self, what: &'static str, expected: usize, got: usize) -> Result<(), MapError> {
        if expected == got {
            Ok(())
        } else {
            Err(MapError::Size {
                name: self.name.clone(),
                what,
                expected,
                got,
            })
        }
    }

    fn elem_attr(&self, key: Option<&[u8]>, value: *const u8, flags: u64) -> BpfAttr {
        let mut attr = BpfAttr::new();
        attr.set_u32(0, self.fd.as_raw_fd() as u32)
            .set_ptr(8, key.map_or(std::ptr::null(), <[u8]>::as_ptr))
            .set_ptr(16, value)
            .set_u64(24, flags);
        attr
    }

    fn key_arg<'k>(&self, key: &'k [u8]) -> Result<Option<&'k [u8]>, MapError> {
        self.check("key", self.key_size as usize, key.len())?;
        Ok(if key.is_empty() { None } else { Some(key) })
    }

    /// `BPF_MAP_LOOKUP_ELEM` into `value` (which must be
    /// [`Map::syscall_value_len`] bytes). Returns false when the key is absent.
    pub fn lookup_into(&self, key: &[u8], value: &mut [u8]) -> Result<bool, MapError> {
        let key = self.key_arg(key)?;
        self.check("value buffer", self.syscall_value_len(), value.len())?;
        let mut attr = self.elem_attr(key, value.as_mut_ptr(), 0);
        match sys::bpf(BpfCmd::MapLookupElem, &mut attr) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(self.syscall_err("BPF_MAP_LOOKUP_ELEM")(e)),
        }
    }

    /// `BPF_MAP_LOOKUP_ELEM`; `None` when the key is absent. For per-CPU maps
    /// the value holds every CPU's slot (see [`Map::percpu_slots`]).
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        let mut value = vec![0u8; self.syscall_value_len()];
        Ok(self.lookup_into(key, &mut value)?.then_some(value))
    }

    /// Per-CPU lookup: one `value_size` vector per possible CPU.
    pub fn lookup_percpu(&self, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>, MapError> {
        if !self.map_type.is_percpu() {
            return Err(self.unsupported("per-CPU lookup"));
        }
        Ok(self.lookup(key)?.map(|raw| {
            self.percpu_slots(&raw)
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect()
        }))
    }

    fn unsupported(&self, op: &'static str) -> MapError {
        MapError::Unsupported {
            name: self.name.clone(),
            map_type: self.map_type.name(),
            op,
        }
    }

    /// `BPF_MAP_UPDATE_ELEM`. For per-CPU maps `value` is either one
    /// `value_size` value (written to every CPU) or all slots back to back.
    pub fn update(&self, key: &[u8], value: &[u8], flags: UpdateFlags) -> Result<(), MapError> {
        let key = self.key_arg(key)?;
        let full;
        let value = if self.map_type.is_percpu() && value.len() == self.value_size as usize {
            let stride = (self.value_size as usize).next_multiple_of(8);
            let mut v = vec![0u8; stride * self.slots];
            for slot in v.chunks_mut(stride) {
                slot[..value.len()].copy_from_slice(value);
            }
            full = v;
            &full[..]
        } else {
            self.check("value", self.syscall_value_len(), value.len())?;
            value
        };
        let mut attr = self.elem_attr(key, value.as_ptr(), flags as u64);
        sys::bpf(BpfCmd::MapUpdateElem, &mut attr)
            .map(|_| ())
            .map_err(self.syscall_err("BPF_MAP_UPDATE_ELEM"))
    }

    /// `BPF_MAP_DELETE_ELEM`. Returns false when the key was absent.
    pub fn delete(&self, key: &[u8]) -> Result<bool, MapError> {
        let key = self.key_arg(key)?;
        let mut attr = self.elem_attr(key, std::ptr::null(), 0);
        match sys::bpf(BpfCmd::MapDeleteElem, &mut attr) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(self.syscall_err("BPF_MAP_DELETE_ELEM")(e)),
        }
    }

    /// `BPF_MAP_GET_NEXT_KEY`: the key after `key`, or the first key for `None`.
    pub fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        if let Some(k) = key {
            self.check("key", self.key_size as usize, k.len())?;
        }
        let mut next = vec![0u8; self.key_size as usize];
        let mut attr = self.elem_attr(key, next.as_mut_ptr(), 0);
        match sys::bpf(BpfCmd::MapGetNextKey, &mut attr) {
            Ok(_) => Ok(Some(next)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.syscall_err("BPF_MAP_GET_NEXT_KEY")(e)),
        }
    }

    /// Iterate the keys with `BPF_MAP_GET_NEXT_KEY`. Keys deleted or added
    /// concurrently may be skipped or repeated, as with any such walk.
    #[must_use]
    pub fn keys(&self) -> MapKeys<'_> {
        MapKeys {
            map: self,
            prev: None,
            done: false,
        }
    }

    /// Push onto a queue or stack map (`BPF_MAP_UPDATE_ELEM` with no key).
    pub fn push(&self, value: &[u8], flags: UpdateFlags) -> Result<(), MapError> {
        if !matches!(self.map_type, MapType::Queue | MapType::Stack) {
            return Err(self.unsupported("push"));
        }
        self.update(&[], value, flags)
    }

    /// Pop from a queue or stack map (`BPF_MAP_LOOKUP_AND_DELETE_ELEM`);
    /// `None` when empty.
    pub fn pop(&self) -> Result<Option<Vec<u8>>, MapError> {
        if !matches!(self.map_type, MapType::Queue | MapType::Stack) {
            return Err(self.unsupported("pop"));
        }
        let mut value = vec![0u8; self.value_size as usize];
        let mut attr = self.elem_attr(None, value.as_mut_ptr(), 0);
        match sys::bpf(BpfCmd::MapLookupAndDeleteElem, &mut attr) {
            Ok(_) => Ok(Some(value)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.syscall_err("BPF_MAP_LOOKUP_AND_DELETE_ELEM")(e)),
        }
    }

    /// Read every entry, with `BPF_MAP_LOOKUP_BATCH` where the kernel has it
    /// and a key walk otherwise.
    pub fn entries(&self) -> Result<Vec<MapEntry>, MapError> {
        self.keyed("reading entries")?;
        match self.batch(BpfCmd::MapLookupBatch) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => self.walk(false),
            Err(e) => Err(e),
        }
    }

    /// Read and remove every entry, with `BPF_MAP_LOOKUP_AND_DELETE_BATCH`
    /// where the kernel has it (hash maps) and lookup + delete otherwise.
    /// Arrays cannot delete: their entries are read and left in place.
    pub fn drain_entries(&self) -> Result<Vec<MapEntry>, MapError> {
        self.keyed("draining entries")?;
        if matches!(self.map_type, MapType::Array | MapType::PercpuArray) {
            return self.entries();
        }
        match self.batch(BpfCmd::MapLookupAndDeleteBatch) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => self.walk(true),
            Err(e) => Err(e),
        }
    }

    /// Queues, stacks and ring buffers have no keys to walk.
    fn keyed(&self, op: &'static str) -> Result<(), MapError> {
        if self.key_size == 0 {
            Err(self.unsupported(op))
        } else {
            Ok(())
        }
    }

    fn walk(&self, delete: bool) -> Result<Vec<MapEntry>, MapError> {
        let keys = self.keys().collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(value) = self.lookup(&key)? {
                if delete {
                    self.delete(&key)?;
                }
                out.push(MapEntry { key, value });
            }
        }
        Ok(out)
    }

    /// One batch walk; `Ok(None)` when the kernel lacks the command for this map.
    fn batch(&self, cmd: BpfCmd) -> Result<Option<Vec<MapEntry>>, MapError> {
        let op = if cmd == BpfCmd::MapLookupBatch {
            "BPF_MAP_LOOKUP_BATCH"
        } else {
            "BPF_MAP_LOOKUP_AND_DELETE_BATCH"
        };
        let ksz = self.key_size as usize;
        let vsz = self.syscall_value_len();
        if ksz == 0 {
            return Ok(None);
        }
        let mut chunk = (self.max_entries as usize).clamp(1, 1024);
        // The batch token is opaque; hash maps use a u32 bucket index, arrays a key.
        let mut token_in = vec![0u8; ksz.max(8)];
        let mut token_out = vec![0u8; ksz.max(8)];
        let mut first = true;
        let mut out = Vec::new();
        loop {
            let mut keys = vec![0u8; ksz * chunk];
            let mut values = vec![0u8; vsz * chunk];
            let mut attr = BpfAttr::new();
            attr.set_ptr(
                0,
                if first {
                    std::ptr::null()
                } else {
                    token_in.as_ptr()
                },
            )
            .set_ptr(8, token_out.as_mut_ptr())
            .set_ptr(16, keys.as_mut_ptr())
            .set_ptr(24, values.as_mut_ptr())
            .set_u32(32, chunk as u32)
            .set_u32(36, self.fd.as_raw_fd() as u32);
            let res = sys::bpf(cmd, &mut attr);
            let got = (attr.u32_at(32) as usize).min(chunk);
            let done = match &res {
                Ok(_) => false,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINVAL | ENOTSUPP | libc::EOPNOTSUPP)
                    ) && first =>
                {
                    return Ok(None);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && got == 0 => {
                    // A hash bucket holds more entries than the chunk: grow and retry.
                    chunk = chunk.saturating_mul(2);
                    continue;
                }
                Err(e) => {
                    return Err(MapError::Syscall {
                        op,
                        name: self.name.clone(),
                        source: io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)),
                    });
                }
            };
            for i in 0..got {
                out.push(MapEntry {
                    key: keys[i * ksz..(i + 1) * ksz].to_vec(),
                    value: values[i * vsz..(i + 1) * vsz].to_vec(),
                });
            }
            if done {
                return Ok(Some(out));
            }
            first = false;
            token_in.copy_from_slice(&token_out);
        }
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Map {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Iterator over a map's keys (see [`Map::keys`]).
#[derive(Debug)]
pub struct MapKeys<'a> {
    map: &'a Map,
    prev: Option<Vec<u8>>,
    done: bool,
}

impl Iterator for MapKeys<'_> {
    type Item = Result<Vec<u8>, MapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.map.next_key(self.prev.as_deref()) {
            Ok(Some(k)) => {
                self.prev = Some(k.clone());
                Some(Ok(k))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised_and_truncated() {
        let n = obj_name("my-map:with a very long name");
        assert_eq!(&n[..15], b"my_map_with_a_v");
        assert_eq!(n[15], 0);
    }

    #[test]
    fn ringbuf_size_is_a_power_of_two_of_pages() {
        let s = MapSpec::ringbuf("rb", 5000);
        assert!(s.max_entries.is_power_of_two());
        assert!(s.max_entries as usize >= sys::page_size());
    }
}
