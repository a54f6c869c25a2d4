//! Consuming a `BPF_MAP_TYPE_RINGBUF` from user space.
//!
//! Layout (see `kernel/bpf/ringbuf.c`): page 0 of the map holds the consumer
//! position (we write it); page 1 the producer position (kernel writes);
//! then the data area, which the kernel maps twice in a row so a record that
//! wraps around the end is still contiguous in our address space. Each
//! record starts with an 8-byte header: a `u32` length whose top bits are
//! BUSY (still being written) and DISCARD (skip it), then a `u32` page offset.

use crate::map::Map;
use crate::sys;
use nexus_insn::MapType;
use std::io;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HDR_SIZE: u64 = 8;

#[derive(Debug, thiserror::Error)]
pub enum RingBufError {
    #[error("map {name:?} is a {map_type} map, not a ring buffer")]
    NotRingBuf {
        name: String,
        map_type: &'static str,
    },
    #[error("ring buffer {name:?}: size {size} is not a power of two")]
    BadSize { name: String, size: u32 },
    #[error("ring buffer {name:?}: duplicating the map fd failed: {source}")]
    Dup {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("ring buffer {name:?}: mmap of the {what} failed: {source}")]
    Mmap {
        name: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A consumer for one ring-buffer map. Its fd (a duplicate of the map fd)
/// becomes readable when records are available: register it with epoll.
#[derive(Debug)]
pub struct RingBuf {
    fd: OwnedFd,
    name: String,
    /// The consumer page (read-write, one page).
    consumer: *mut u8,
    /// The producer page followed by the data area twice (read-only).
    producer: *mut u8,
    producer_len: usize,
    page: usize,
    mask: u64,
}

// SAFETY: the mappings are plain shared memory owned by this value alone;
// nothing in them is tied to the creating thread, so moving the consumer to
// another thread is sound. It is not Sync: `next` needs `&mut self`.
unsafe impl Send for RingBuf {}

impl RingBuf {
    /// Map the ring buffer of `map` for consuming.
    pub fn new(map: &Map) -> Result<RingBuf, RingBufError> {
        let name = map.name().to_string();
        if map.map_type() != MapType::Ringbuf {
            return Err(RingBufError::NotRingBuf {
                name,
                map_type: map.map_type().name(),
            });
        }
        let size = map.max_entries();
        if !size.is_power_of_two() {
            return Err(RingBufError::BadSize { name, size });
        }
        let fd = map
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| RingBufError::Dup {
                name: name.clone(),
                source,
            })?;
        let page = sys::page_size();
        let consumer = sys::mmap_shared(fd.as_fd(), page, libc::PROT_READ | libc::PROT_WRITE, 0)
            .map_err(|source| RingBufError::Mmap {
                name: name.clone(),
                what: "consumer page",
                source,
            })?;
        let producer_len = page + 2 * size as usize;
        let producer =
            match sys::mmap_shared(fd.as_fd(), producer_len, libc::PROT_READ, page as i64) {
                Ok(p) => p,
                Err(source) => {
                    // Nothing else references the consumer page yet; unmapping it
                    // is best effort, the fd drop releases the map regardless.
                    let _ = sys::munmap(consumer, page);
                    return Err(RingBufError::Mmap {
                        name,
                        what: "producer page and data area",
                        source,
                    });
                }
            };
        Ok(RingBuf {
            fd,
            name,
            consumer,
            producer,
            producer_len,
            page,
            mask: u64::from(size) - 1,
        })
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: `consumer` is a live, page-aligned, writable mapping of at
        // least 8 bytes for as long as `self` exists; the kernel only reads
        // this word, and all our accesses are atomic.
        unsafe { &*self.consumer.cast::<AtomicU64>() }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: `producer` is a live, page-aligned mapping whose first word
        // the kernel updates atomically; we only load it atomically.
        unsafe { &*self.producer.cast::<AtomicU64>() }
    }

    /// Bytes published but not yet consumed.
    #[must_use]
    pub fn pending_bytes(&self) -> u64 {
        let prod = self.producer_pos().load(Ordering::Acquire);
        prod.saturating_sub(self.consumer_pos().load(Ordering::Relaxed))
    }

    /// The next complete record, or `None` when the buffer is empty or the
    /// next record is still being written. The record's space is handed back
    /// to the kernel when the returned guard is dropped.
    // Not `Iterator::next`: each record borrows the buffer (a lending
    // iterator), which the `Iterator` trait cannot express.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<RingBufRecord<'_>> {
        loop {
            let cons = self.consumer_pos().load(Ordering::Relaxed);
            let prod = self.producer_pos().load(Ordering::Acquire);
            if cons >= prod {
                return None;
            }
            let off = (cons & self.mask) as usize;
            // SAFETY: `off < size`, so the header at data + off lies inside the
            // first copy of the data area (data starts one page into the
            // producer mapping); it is 8-aligned because record sizes are
            // multiples of 8. The kernel writes the length word atomically.
            let hdr = unsafe { &*self.producer.add(self.page + off).cast::<AtomicU32>() };
            let len_word = hdr.load(Ordering::Acquire);
            if len_word & BUSY_BIT != 0 {
                return None;
            }
            let len = len_word & !(BUSY_BIT | DISCARD_BIT);
            let next = cons + (u64::from(len) + HDR_SIZE).next_multiple_of(8);
            if len_word & DISCARD_BIT != 0 {
                self.consumer_pos().store(next, Ordering::Release);
                continue;
            }
            // SAFETY: the record body starts 8 bytes after its header and is
            // `len` bytes long; `off + 8 + len <= 2 * size` because a record
            // never exceeds the buffer size, and the data area is mapped twice,
            // so the slice is inside the mapping even when it wraps. The kernel
            // does not touch committed records before consumer_pos passes them,
            // which happens only when the guard (borrowing `self`) drops.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    self.producer.add(self.page + off + HDR_SIZE as usize),
                    len as usize,
                )
            };
            return Some(RingBufRecord {
                bytes,
                consumer: self.consumer_pos(),
                next,
            });
        }
    }

    /// Hand every available record to `f`; returns how many were consumed.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(rec) = self.next() {
            f(&rec);
            n += 1;
        }
        n
    }
}

impl Drop for RingBuf {
    fn drop(&mut self) {
        // Unmapping can only fail for bad arguments, which we never pass;
        // there is nothing useful to do with an error in drop.
        let _ = sys::munmap(self.producer, self.producer_len);
        let _ = sys::munmap(self.consumer, self.page);
    }
}

impl AsFd for RingBuf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for RingBuf {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One record borrowed from the ring buffer. Dropping it releases the space.
#[derive(Debug)]
pub struct RingBufRecord<'a> {
    bytes: &'a [u8],
    consumer: &'a AtomicU64,
    next: u64,
}

impl Deref for RingBufRecord<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl Drop for RingBufRecord<'_> {
    fn drop(&mut self) {
        // Release: our reads of the record happen before the kernel may reuse it.
        self.consumer.store(self.next, Ordering::Release);
    }
}
