//! Maps as the kernel defines them — array, hash, LRU hash, per-CPU array and
//! hash, queue, stack, ring buffer — with the same flags and errno values, and
//! the host-side API to create, read, iterate and update them.
//!
//! Values live in one flat buffer per map, `stride` bytes apart (the value
//! size rounded up to 8, as the kernel lays out array elements), so a pointer
//! a program receives is just an offset into that buffer. Per-CPU maps keep
//! the values of one key for all CPUs next to each other, which is also the
//! layout `BPF_MAP_LOOKUP_ELEM` returns for them: [`Map::lookup`] on a
//! per-CPU map yields `num_cpus × stride` bytes.

use crate::ringbuf::RingBuf;
use nexus_insn::MapType;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// `BPF_ANY`: create or update.
pub const BPF_ANY: u64 = 0;
/// `BPF_NOEXIST`: create only.
pub const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST`: update only (for queues and stacks: overwrite the oldest when full).
pub const BPF_EXIST: u64 = 2;

/// Errno values helpers return negated, as the kernel's do.
pub mod errno {
    pub const ENOENT: i64 = 2;
    pub const E2BIG: i64 = 7;
    pub const ENOMEM: i64 = 12;
    pub const EFAULT: i64 = 14;
    pub const EEXIST: i64 = 17;
    pub const EINVAL: i64 = 22;
    pub const ENOSPC: i64 = 28;
    pub const EOPNOTSUPP: i64 = 95;
}

/// Errors of map operations, each naming the map and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("map {map}: {what}")]
    InvalidSpec { map: String, what: String },
    #[error("map {map}: key is {got} bytes, the map's key size is {expected}")]
    KeySize {
        map: String,
        expected: u32,
        got: usize,
    },
    #[error("map {map}: value is {got} bytes, the map's value size is {expected}")]
    ValueSize {
        map: String,
        expected: usize,
        got: usize,
    },
    #[error("map {map}: no such key")]
    NotFound { map: String },
    #[error("map {map}: key exists and BPF_NOEXIST was given")]
    Exists { map: String },
    #[error("map {map}: full ({max_entries} entries)")]
    Full { map: String, max_entries: u32 },
    #[error("map {map}: unknown update flags {flags:#x}")]
    BadFlags { map: String, flags: u64 },
    #[error("map {map}: {op} is not supported on a {map_type} map")]
    Unsupported {
        map: String,
        op: &'static str,
        map_type: &'static str,
    },
    #[error("no map with index {index} (the program has {count} maps)")]
    NoSuchMap { index: usize, count: usize },
}

impl MapError {
    /// The errno a helper returns (negated) for this error.
    #[must_use]
    pub fn errno(&self) -> i64 {
        match self {
            MapError::NotFound { .. } => errno::ENOENT,
            MapError::Exists { .. } => errno::EEXIST,
            MapError::Full { .. } => errno::E2BIG,
            MapError::Unsupported { .. } => errno::EOPNOTSUPP,
            _ => errno::EINVAL,
        }
    }
}

/// The declarative description of a map, as the compiler's Artifact lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub name: String,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    /// For a ring buffer: its size in bytes (a power of two).
    pub max_entries: u32,
}

impl MapSpec {
    #[must_use]
    pub fn new(
        name: &str,
        map_type: MapType,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> MapSpec {
        MapSpec {
            name: name.to_string(),
            map_type,
            key_size,
            value_size,
            max_entries,
        }
    }
}

/// A small multiplicative hasher: map keys are short byte strings hashed on
/// every lookup in the hot path, where SipHash costs more than the rest of a
/// `count()` program. Keys come from the programs the host loads, so hash
/// flooding is not a threat model here.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct KeyHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(5) ^ w).wrapping_mul(SEED);
        }
        let mut tail = 0u64;
        for (i, b) in chunks.remainder().iter().enumerate() {
            tail |= u64::from(*b) << (8 * i);
        }
        h = (h.rotate_left(5) ^ tail ^ bytes.len() as u64).wrapping_mul(SEED);
        self.0 = h;
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(SEED);
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(SEED);
    }
    fn finish(&self) -> u64 {
        // Fold the high bits down: hashbrown picks buckets from the low bits
        // and control bytes from the top seven.
        self.0 ^ (self.0 >> 29)
    }
}

type Hashed<K> = HashMap<K, u32, BuildHasherDefault<KeyHasher>>;

/// Key → slot. Keys of up to 8 bytes (most of them: pids, ids, reasons)
/// are packed into a `u64`, which hashes with one multiply and compares
/// without a `memcmp` call; longer keys are kept as boxed bytes.
#[derive(Debug)]
enum KeyIndex {
    Small { key_size: usize, map: Hashed<u64> },
    Large(Hashed<Box<[u8]>>),
}

fn pack(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..key.len()].copy_from_slice(key);
    u64::from_le_bytes(b)
}

impl KeyIndex {
    fn new(key_size: usize, capacity: usize) -> KeyIndex {
        if key_size <= 8 {
            KeyIndex::Small {
                key_size,
                map: Hashed::with_capacity_and_hasher(capacity, Default::default()),
            }
        } else {
            KeyIndex::Large(Hashed::with_capacity_and_hasher(
                capacity,
                Default::default(),
            ))
        }
    }
    /// `key` has the map's key size (checked by the caller).
    #[inline]
    fn get(&self, key: &[u8]) -> Option<u32> {
        match self {
            KeyIndex::Small { map, .. } => map.get(&pack(key)).copied(),
            KeyIndex::Large(map) => map.get(key).copied(),
        }
    }
    fn insert(&mut self, key: &[u8], slot: u32) {
        match self {
            KeyIndex::Small { map, .. } => {
                map.insert(pack(key), slot);
            }
            KeyIndex::Large(map) => {
                map.insert(key.into(), slot);
            }
        }
    }
    fn remove(&mut self, key: &[u8]) -> Option<u32> {
        match self {
            KeyIndex::Small { map, .. } => map.remove(&pack(key)),
            KeyIndex::Large(map) => map.remove(key),
        }
    }
    fn len(&self) -> usize {
        match self {
            KeyIndex::Small { map, .. } => map.len(),
            KeyIndex::Large(map) => map.len(),
        }
    }
    /// Every (key bytes, slot).
    fn entries(&self) -> Vec<(Vec<u8>, u32)> {
        match self {
            KeyIndex::Small { key_size, map } => map
                .iter()
                .map(|(k, s)| (k.to_le_bytes()[..*key_size].to_vec(), *s))
                .collect(),
            KeyIndex::Large(map) => map.iter().map(|(k, s)| (k.to_vec(), *s)).collect(),
        }
    }
    /// Remove the entry whose slot has the smallest `last_use`; its slot.
    fn evict_oldest(&mut self, last_use: &[u64]) -> Option<u32> {
        match self {
            KeyIndex::Small { map, .. } => {
                let (k, s) = map
                    .iter()
                    .min_by_key(|(_, s)| last_use[**s as usize])
                    .map(|(k, s)| (*k, *s))?;
                map.remove(&k);
                Some(s)
            }
            KeyIndex::Large(map) => {
                let (k, s) = map
                    .iter()
                    .min_by_key(|(_, s)| last_use[**s as usize])
                    .map(|(k, s)| (k.clone(), *s))?;
                map.remove(&k);
                Some(s)
            }
        }
    }
}

#[derive(Debug)]
struct HashStore {
    index: KeyIndex,
    free: Vec<u32>,
    /// Last-use tick per slot for LRU maps; empty otherwise.
    last_use: Vec<u64>,
    tick: u64,
}

#[derive(Debug)]
struct DequeStore {
    head: usize,
    len: usize,
    /// Stack (LIFO) when true, queue (FIFO) otherwise.
    lifo: bool,
}

#[derive(Debug)]
enum Store {
    Array,
    Hash(HashStore),
    Deque(DequeStore),
    RingBuf(RingBuf),
}

/// One map.
#[derive(Debug)]
pub struct Map {
    spec: MapSpec,
    /// Copies of each value: `num_cpus` for per-CPU maps, else 1.
    copies: usize,
    stride: usize,
    values: Vec<u8>,
    store: Store,
}

fn kind_name(t: MapType) -> &'static str {
    t.name()
}

impl Map {
    /// Create a map; `num_cpus` sizes per-CPU maps.
    pub fn new(spec: &MapSpec, num_cpus: u32) -> Result<Map, MapError> {
        let bad = |what: String| MapError::InvalidSpec {
            map: spec.name.clone(),
            what,
        };
        let t = spec.map_type;
        let copies = if t.is_percpu() {
            num_cpus.max(1) as usize
        } else {
            1
        };
        let stride = (spec.value_size as usize).div_ceil(8) * 8;
        let entries = spec.max_entries as usize;
        let store = match t {
            MapType::Array | MapType::PercpuArray => {
                if spec.key_size != 4 {
                    return Err(bad(format!(
                        "an array's key size must be 4, not {}",
                        spec.key_size
                    )));
                }
                Store::Array
            }
            MapType::Hash | MapType::PercpuHash | MapType::LruHash | MapType::LruPercpuHash => {
                if spec.key_size == 0 {
                    return Err(bad("a hash map needs a key size above 0".into()));
                }
                let lru = matches!(t, MapType::LruHash | MapType::LruPercpuHash);
                Store::Hash(HashStore {
                    index: KeyIndex::new(spec.key_size as usize, entries.min(1 << 16)),
                    free: (0..spec.max_entries).rev().collect(),
                    last_use: if lru { vec![0; entries] } else { Vec::new() },
                    tick: 0,
                })
            }
            MapType::Queue | MapType::Stack => {
                if spec.key_size != 0 {
                    return Err(bad(format!(
                        "a {} has no key; key size must be 0",
                        t.name()
                    )));
                }
                Store::Deque(DequeStore {
                    head: 0,
                    len: 0,
                    lifo: t == MapType::Stack,
                })
            }
            MapType::Ringbuf => {
                // Offsets into the doubled buffer must fit a pointer's 32 bits.
                if !spec.max_entries.is_power_of_two()
                    || !(16..=1 << 30).contains(&spec.max_entries)
                {
                    return Err(bad(format!(
                        "a ring buffer's size must be a power of two from 16 to 1 GiB, not {}",
                        spec.max_entries
                    )));
                }
                if spec.key_size != 0 || spec.value_size != 0 {
                    return Err(bad("a ring buffer has no key or value size".into()));
                }
                Store::RingBuf(RingBuf::new(entries))
            }
            other => {
                return Err(bad(format!(
                    "{} maps are not supported by the VM",
                    other.name()
                )));
            }
        };
        if !matches!(store, Store::RingBuf(_)) {
            if spec.value_size == 0 || entries == 0 {
                return Err(bad("value size and max entries must be above 0".into()));
            }
            if spec.value_size > 1 << 20 || spec.key_size > 512 {
                return Err(bad(
                    "key size is limited to 512 and value size to 1 MiB".into()
                ));
            }
        }
        let bytes = if matches!(store, Store::RingBuf(_)) {
            0
        } else {
            entries
                .checked_mul(stride)
                .and_then(|n| n.checked_mul(copies))
                .filter(|n| *n < 1 << 32)
                .ok_or_else(|| bad("too large: over 4 GiB of values".into()))?
        };
        Ok(Map {
            spec: spec.clone(),
            copies,
            stride,
            values: vec![0; bytes],
            store,
        })
    }

    #[must_use]
    pub fn spec(&self) -> &MapSpec {
        &self.spec
    }
    #[must_use]
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    #[must_use]
    pub fn map_type(&self) -> MapType {
        self.spec.map_type
    }
    /// Distance between consecutive values (value size rounded up to 8).
    #[must_use]
    pub fn value_stride(&self) -> usize {
        self.stride
    }
    /// Values per key: the CPU count for per-CPU maps, else 1.
    #[must_use]
    pub fn copies(&self) -> usize {
        self.copies
    }

    fn unsupported(&self, op: &'static str) -> MapError {
        MapError::Unsupported {
            map: self.spec.name.clone(),
            op,
            map_type: kind_name(self.spec.map_type),
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() != self.spec.key_size as usize {
            return Err(MapError::KeySize {
                map: self.spec.name.clone(),
                expected: self.spec.key_size,
                got: key.len(),
            });
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8], expected: usize) -> Result<(), MapError> {
        if value.len() != expected {
            return Err(MapError::ValueSize {
                map: self.spec.name.clone(),
                expected,
                got: value.len(),
            });
        }
        Ok(())
    }

    fn array_index(&self, key: &[u8]) -> Option<usize> {
        let i = u32::from_le_bytes([key[0], key[1], key[2], key[3]]) as usize;
        (i < self.spec.max_entries as usize).then_some(i)
    }

    /// Byte offset of `slot`'s value for `cpu` in the value buffer.
    fn value_off(&self, slot: usize, cpu: usize) -> usize {
        (slot * self.copies + cpu) * self.stride
    }

    /// The slot holding `key`, touching it for LRU.
    pub(crate) fn find_slot(&mut self, key: &[u8]) -> Result<Option<usize>, MapError> {
        self.check_key(key)?;
        match &mut self.store {
            Store::Array => Ok(self.array_index(key)),
            Store::Hash(h) => {
                let Some(slot) = h.index.get(key) else {
                    return Ok(None);
                };
                if !h.last_use.is_empty() {
                    h.tick += 1;
                    h.last_use[slot as usize] = h.tick;
                }
                Ok(Some(slot as usize))
            }
            _ => Err(self.unsupported("lookup")),
        }
    }

    /// Program-side lookup: the offset of the current CPU's value.
    pub(crate) fn lookup_for_cpu(
        &mut self,
        key: &[u8],
        cpu: u32,
    ) -> Result<Option<usize>, MapError> {
        let cpu = (cpu as usize).min(self.copies - 1);
        Ok(self.find_slot(key)?.map(|slot| self.value_off(slot, cpu)))
    }

    /// Look up `key` (host side). For per-CPU maps the value of every CPU is
    /// returned, `value_stride()` bytes apart.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<&[u8]>, MapError> {
        self.check_key(key)?;
        let slot = match &self.store {
            Store::Array => self.array_index(key),
            Store::Hash(h) => h.index.get(key).map(|s| s as usize),
            _ => return Err(self.unsupported("lookup")),
        };
        Ok(slot.map(|s| {
            let off = self.value_off(s, 0);
            if self.copies == 1 {
                &self.values[off..off + self.spec.value_size as usize]
            } else {
                &self.values[off..off + self.stride * self.copies]
            }
        }))
    }

    /// Insert or update from a program: `value` goes to `cpu`'s copy; a new
    /// per-CPU entry starts with zeroes on the other CPUs, as in the kernel.
    pub(crate) fn update_for_cpu(
        &mut self,
        key: &[u8],
        value: &[u8],
        flags: u64,
        cpu: u32,
    ) -> Result<(), MapError> {
        let cpu = (cpu as usize).min(self.copies - 1);
        let vs = self.spec.value_size as usize;
        self.check_value(value, vs)?;
        let (slot, fresh) = self.slot_for_update(key, flags)?;
        if fresh {
            let start = self.value_off(slot, 0);
            self.values[start..start + self.stride * self.copies].fill(0);
        }
        let off = self.value_off(slot, cpu);
        self.values[off..off + vs].copy_from_slice(value);
        Ok(())
    }

    /// Insert or update from the host. For per-CPU maps `value` is either one
    /// value (stored on every CPU) or `num_cpus × value_stride()` bytes.
    pub fn update(&mut self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        let vs = self.spec.value_size as usize;
        let all = self.copies * self.stride;
        if self.copies > 1 && value.len() == all {
            let (slot, _) = self.slot_for_update(key, flags)?;
            let off = self.value_off(slot, 0);
            self.values[off..off + all].copy_from_slice(value);
            return Ok(());
        }
        self.check_value(value, vs)?;
        let (slot, _) = self.slot_for_update(key, flags)?;
        for cpu in 0..self.copies {
            let off = self.value_off(slot, cpu);
            self.values[off..off + vs].copy_from_slice(value);
        }
        Ok(())
    }

    /// The slot `key` is to be written to under `flags`; true when it is new.
    fn slot_for_update(&mut self, key: &[u8], flags: u64) -> Result<(usize, bool), MapError> {
        self.check_key(key)?;
        if flags > BPF_EXIST {
            return Err(MapError::BadFlags {
                map: self.spec.name.clone(),
                flags,
            });
        }
        let name = &self.spec.name;
        let max_entries = self.spec.max_entries;
        match &mut self.store {
            Store::Array => {
                if flags == BPF_NOEXIST {
                    // Every array element always exists.
                    return Err(MapError::Exists { map: name.clone() });
                }
                let i = u32::from_le_bytes([key[0], key[1], key[2], key[3]]) as usize;
                if i >= max_entries as usize {
                    return Err(MapError::Full {
                        map: name.clone(),
                        max_entries,
                    });
                }
                Ok((i, false))
            }
            Store::Hash(h) => {
                let lru = !h.last_use.is_empty();
                h.tick += 1;
                if let Some(slot) = h.index.get(key) {
                    if flags == BPF_NOEXIST {
                        return Err(MapError::Exists { map: name.clone() });
                    }
                    if lru {
                        h.last_use[slot as usize] = h.tick;
                    }
                    return Ok((slot as usize, false));
                }
                if flags == BPF_EXIST {
                    return Err(MapError::NotFound { map: name.clone() });
                }
                let slot = match h.free.pop() {
                    Some(s) => s,
                    None if lru => {
                        // Evict the least recently used entry. A linear scan
                        // keeps the hot lookup path free of list upkeep.
                        match h.index.evict_oldest(&h.last_use) {
                            Some(s) => s,
                            None => {
                                return Err(MapError::Full {
                                    map: name.clone(),
                                    max_entries,
                                });
                            }
                        }
                    }
                    None => {
                        return Err(MapError::Full {
                            map: name.clone(),
                            max_entries,
                        });
                    }
                };
                h.index.insert(key, slot);
                if lru {
                    h.last_use[slot as usize] = h.tick;
                }
                Ok((slot as usize, true))
            }
            _ => Err(MapError::Unsupported {
                map: name.clone(),
                op: "update",
                map_type: kind_name(self.spec.map_type),
            }),
        }
    }

    /// Delete `key`. Arrays refuse (`EINVAL`), as in the kernel.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        let name = &self.spec.name;
        match &mut self.store {
            Store::Hash(h) => match h.index.remove(key) {
                Some(slot) => {
                    h.free.push(slot);
                    Ok(())
                }
                None => Err(MapError::NotFound { map: name.clone() }),
            },
            _ => Err(self.unsupported("delete")),
        }
    }

    /// Every entry: `(key, value)`; per-CPU values as in [`Map::lookup`].
    /// Hash maps iterate in no particular order.
    #[must_use]
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let width = if self.copies == 1 {
            self.spec.value_size as usize
        } else {
            self.stride * self.copies
        };
        let value = |slot: usize| {
            let off = self.value_off(slot, 0);
            self.values[off..off + width].to_vec()
        };
        match &self.store {
            Store::Array => (0..self.spec.max_entries)
                .map(|i| (i.to_le_bytes().to_vec(), value(i as usize)))
                .collect(),
            Store::Hash(h) => h
                .index
                .entries()
                .into_iter()
                .map(|(k, s)| (k, value(s as usize)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Number of live entries (array: `max_entries`; queue/stack: queued values).
    #[must_use]
    pub fn len(&self) -> usize {
        match &self.store {
            Store::Array => self.spec.max_entries as usize,
            Store::Hash(h) => h.index.len(),
            Store::Deque(d) => d.len,
            Store::RingBuf(_) => 0,
        }
    }
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Push onto a queue or stack. When full, `BPF_EXIST` drops the oldest
    /// value; otherwise the push fails with `E2BIG`.
    pub fn push(&mut self, value: &[u8], flags: u64) -> Result<(), MapError> {
        self.check_value(value, self.spec.value_size as usize)?;
        let max = self.spec.max_entries as usize;
        let stride = self.stride;
        let name = &self.spec.name;
        let Store::Deque(d) = &mut self.store else {
            return Err(self.unsupported("push"));
        };
        if flags != BPF_ANY && flags != BPF_EXIST {
            return Err(MapError::BadFlags {
                map: name.clone(),
                flags,
            });
        }
        if d.len == max {
            if flags != BPF_EXIST {
                return Err(MapError::Full {
                    map: name.clone(),
                    max_entries: max as u32,
                });
            }
            // Drop the oldest: the queue's head or the stack's bottom.
            d.head = (d.head + 1) % max;
            d.len -= 1;
        }
        let slot = (d.head + d.len) % max;
        d.len += 1;
        self.values[slot * stride..slot * stride + value.len()].copy_from_slice(value);
        Ok(())
    }

    fn deque_take(&mut self, remove: bool) -> Result<Vec<u8>, MapError> {
        let max = self.spec.max_entries as usize;
        let vs = self.spec.value_size as usize;
        let stride = self.stride;
        let name = &self.spec.name;
        let Store::Deque(d) = &mut self.store else {
            return Err(self.unsupported(if remove { "pop" } else { "peek" }));
        };
        if d.len == 0 {
            return Err(MapError::NotFound { map: name.clone() });
        }
        let slot = if d.lifo {
            (d.head + d.len - 1) % max
        } else {
            d.head
        };
        if remove {
            if !d.lifo {
                d.head = (d.head + 1) % max;
            }
            d.len -= 1;
        }
        Ok(self.values[slot * stride..slot * stride + vs].to_vec())
    }

    /// Remove and return the next value of a queue (oldest) or stack (newest).
    pub fn pop(&mut self) -> Result<Vec<u8>, MapError> {
        self.deque_take(true)
    }
    /// Return the value [`Map::pop`] would, without removing it.
    pub fn peek(&self) -> Result<Vec<u8>, MapError> {
        let Store::Deque(d) = &self.store else {
            return Err(self.unsupported("peek"));
        };
        if d.len == 0 {
            return Err(MapError::NotFound {
                map: self.spec.name.clone(),
            });
        }
        let max = self.spec.max_entries as usize;
        let slot = if d.lifo {
            (d.head + d.len - 1) % max
        } else {
            d.head
        };
        let off = slot * self.stride;
        Ok(self.values[off..off + self.spec.value_size as usize].to_vec())
    }

    /// The ring buffer, when this map is one.
    pub fn ringbuf(&mut self) -> Option<&mut RingBuf> {
        match &mut self.store {
            Store::RingBuf(rb) => Some(rb),
            _ => None,
        }
    }
    pub(crate) fn ringbuf_ref(&self) -> Option<&RingBuf> {
        match &self.store {
            Store::RingBuf(rb) => Some(rb),
            _ => None,
        }
    }

    /// The memory programs address through pointers into this map, and the
    /// bytes of each value that may be touched (`value_size` of `stride`).
    pub(crate) fn memory(&self) -> (&[u8], usize, usize) {
        match &self.store {
            Store::RingBuf(rb) => (rb.data(), 0, 0),
            _ => (&self.values, self.stride, self.spec.value_size as usize),
        }
    }
    pub(crate) fn memory_mut(&mut self) -> (&mut [u8], usize, usize) {
        match &mut self.store {
            Store::RingBuf(rb) => (rb.data_mut(), 0, 0),
            _ => (&mut self.values, self.stride, self.spec.value_size as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(t: MapType, ks: u32, vs: u32, n: u32) -> MapSpec {
        MapSpec::new("m", t, ks, vs, n)
    }

    #[test]
    fn hash_flags_follow_the_kernel() {
        let mut m = Map::new(&spec(MapType::Hash, 8, 8, 2), 1).expect("map");
        let k = 7u64.to_le_bytes();
        assert!(matches!(
            m.update(&k, &[1; 8], BPF_EXIST),
            Err(MapError::NotFound { .. })
        ));
        m.update(&k, &[1; 8], BPF_NOEXIST).expect("insert");
        assert!(matches!(
            m.update(&k, &[2; 8], BPF_NOEXIST),
            Err(MapError::Exists { .. })
        ));
        m.update(&k, &[2; 8], BPF_ANY).expect("update");
        assert_eq!(m.lookup(&k).expect("ok"), Some(&[2u8; 8][..]));
        m.update(&1u64.to_le_bytes(), &[3; 8], BPF_ANY)
            .expect("second");
        let e = m.update(&2u64.to_le_bytes(), &[3; 8], BPF_ANY).unwrap_err();
        assert_eq!(e.errno(), errno::E2BIG);
        m.delete(&k).expect("delete");
        assert_eq!(m.lookup(&k).expect("ok"), None);
        m.update(&2u64.to_le_bytes(), &[3; 8], BPF_ANY)
            .expect("slot reused");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn lru_evicts_least_recent() {
        let mut m = Map::new(&spec(MapType::LruHash, 4, 4, 2), 1).expect("map");
        m.update(&1u32.to_le_bytes(), &[1; 4], BPF_ANY).expect("1");
        m.update(&2u32.to_le_bytes(), &[2; 4], BPF_ANY).expect("2");
        m.find_slot(&1u32.to_le_bytes()).expect("touch");
        m.update(&3u32.to_le_bytes(), &[3; 4], BPF_ANY)
            .expect("3 evicts 2");
        assert!(m.lookup(&2u32.to_le_bytes()).expect("ok").is_none());
        assert!(m.lookup(&1u32.to_le_bytes()).expect("ok").is_some());
    }

    #[test]
    fn array_and_percpu_layout() {
        let mut a = Map::new(&spec(MapType::PercpuArray, 4, 4, 3), 2).expect("map");
        a.update_for_cpu(&1u32.to_le_bytes(), &[5; 4], BPF_ANY, 1)
            .expect("cpu1");
        let v = a.lookup(&1u32.to_le_bytes()).expect("ok").expect("present");
        assert_eq!(v, &[0, 0, 0, 0, 0, 0, 0, 0, 5, 5, 5, 5, 0, 0, 0, 0]);
        assert!(a.lookup(&3u32.to_le_bytes()).expect("ok").is_none());
        assert!(a.delete(&1u32.to_le_bytes()).is_err());
        assert!(Map::new(&spec(MapType::Array, 8, 4, 1), 1).is_err());
    }

    #[test]
    fn queue_and_stack_order() {
        let mut q = Map::new(&spec(MapType::Queue, 0, 1, 2), 1).expect("q");
        let mut s = Map::new(&spec(MapType::Stack, 0, 1, 2), 1).expect("s");
        for v in 1..=2u8 {
            q.push(&[v], BPF_ANY).expect("push");
            s.push(&[v], BPF_ANY).expect("push");
        }
        assert!(q.push(&[3], BPF_ANY).is_err());
        q.push(&[3], BPF_EXIST).expect("overwrite oldest");
        assert_eq!(q.pop().expect("pop"), vec![2]);
        assert_eq!(q.peek().expect("peek"), vec![3]);
        assert_eq!(s.pop().expect("pop"), vec![2]);
        assert_eq!(s.pop().expect("pop"), vec![1]);
        assert!(matches!(s.pop(), Err(MapError::NotFound { .. })));
    }
}
