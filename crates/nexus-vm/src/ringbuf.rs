//! A ring buffer with the kernel's record format (`kernel/bpf/ringbuf.c`):
//! every record starts with an 8-byte header — a `u32` length whose bit 31
//! says the record is still being written (BUSY) and bit 30 that it was
//! discarded, then a `u32` page offset — and records are 8-byte aligned.
//! [`consume_records`] walks that format and serves the kernel's mmap'ed
//! ring buffer as well as this one.
//!
//! The kernel maps the data area twice in a row so a record that wraps is
//! still contiguous; this buffer keeps `2 × size` bytes for the same reason,
//! so producer and consumer see each record at `pos & mask`, contiguously.

/// Bit 31 of the header length: the producer has not submitted yet.
pub const RINGBUF_BUSY_BIT: u32 = 1 << 31;
/// Bit 30 of the header length: the record was discarded; skip it.
pub const RINGBUF_DISCARD_BIT: u32 = 1 << 30;
/// Size of the record header.
pub const RINGBUF_HDR_SZ: usize = 8;

/// What a record header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordState {
    /// Still reserved: the consumer must stop here.
    Busy,
    /// Discarded: skip `len` payload bytes.
    Discarded { len: u32 },
    /// Submitted: `len` payload bytes follow the header.
    Ready { len: u32 },
}

/// Decode the length word of a record header.
#[must_use]
pub fn parse_record_header(len_word: u32) -> RecordState {
    let len = len_word & !(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT);
    if len_word & RINGBUF_BUSY_BIT != 0 {
        RecordState::Busy
    } else if len_word & RINGBUF_DISCARD_BIT != 0 {
        RecordState::Discarded { len }
    } else {
        RecordState::Ready { len }
    }
}

/// Bytes a record with `len` payload bytes occupies in the ring.
#[must_use]
pub const fn record_footprint(len: u32) -> u64 {
    (len as u64 + RINGBUF_HDR_SZ as u64 + 7) & !7
}

/// Walk the records between `consumer` and `producer` in `data`, a view of
/// the data area that is contiguous for at least `mask + 1` bytes past any
/// position (the kernel's double mapping, or this module's doubled buffer).
/// Calls `f` with each submitted payload, skips discarded ones, stops at the
/// first busy one or at a header that would run past `data`. Returns the new
/// consumer position (to be published as the kernel's `consumer_pos`).
pub fn consume_records(
    data: &[u8],
    mask: u64,
    mut consumer: u64,
    producer: u64,
    mut f: impl FnMut(&[u8]),
) -> u64 {
    while consumer < producer {
        let off = (consumer & mask) as usize;
        let Some(hdr) = data.get(off..off + 4) else {
            break;
        };
        let len_word = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let len = match parse_record_header(len_word) {
            RecordState::Busy => break,
            RecordState::Discarded { len } => len,
            RecordState::Ready { len } => {
                let start = off + RINGBUF_HDR_SZ;
                let Some(payload) = data.get(start..start + len as usize) else {
                    break;
                };
                f(payload);
                len
            }
        };
        consumer += record_footprint(len);
    }
    consumer
}

/// The VM's ring buffer.
#[derive(Debug)]
pub struct RingBuf {
    data: Vec<u8>,
    mask: u64,
    producer: u64,
    consumer: u64,
    dropped: u64,
    /// Reservations not yet submitted or discarded, so a run that forgets one
    /// can be cleaned up without scanning the ring every time.
    outstanding: u32,
}

impl RingBuf {
    /// `size` must be a power of two of at least 16 bytes (checked by the map layer).
    #[must_use]
    pub fn new(size: usize) -> RingBuf {
        RingBuf {
            data: vec![0; size * 2],
            mask: size as u64 - 1,
            producer: 0,
            consumer: 0,
            dropped: 0,
            outstanding: 0,
        }
    }

    /// Capacity of the data area in bytes.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.mask + 1
    }

    /// Reserve `len` payload bytes; returns the payload's offset in
    /// [`RingBuf::data`], or `None` (counted as a drop) when there is no room.
    pub fn reserve(&mut self, len: u32) -> Option<usize> {
        let footprint = record_footprint(len);
        if len == 0
            || len & (RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT) != 0
            || footprint > self.size()
            || self.producer - self.consumer + footprint > self.size()
        {
            self.dropped += 1;
            return None;
        }
        let off = (self.producer & self.mask) as usize;
        let page_off = (off / 4096) as u32;
        self.data[off..off + 4].copy_from_slice(&(len | RINGBUF_BUSY_BIT).to_le_bytes());
        self.data[off + 4..off + 8].copy_from_slice(&page_off.to_le_bytes());
        self.producer += footprint;
        self.outstanding += 1;
        Some(off + RINGBUF_HDR_SZ)
    }

    /// Finish the reservation whose payload starts at `payload_off`.
    /// Returns false when no busy record starts there.
    pub fn commit(&mut self, payload_off: usize, discard: bool) -> bool {
        let Some(hdr_off) = payload_off.checked_sub(RINGBUF_HDR_SZ) else {
            return false;
        };
        let Some(word) = self.data.get(hdr_off..hdr_off + 4) else {
            return false;
        };
        let len_word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        if parse_record_header(len_word) != RecordState::Busy {
            return false;
        }
        let mut new = len_word & !RINGBUF_BUSY_BIT;
        if discard {
            new |= RINGBUF_DISCARD_BIT;
        }
        self.data[hdr_off..hdr_off + 4].copy_from_slice(&new.to_le_bytes());
        self.outstanding = self.outstanding.saturating_sub(1);
        true
    }

    /// Copy `payload` in as one submitted record (`bpf_ringbuf_output`).
    pub fn output(&mut self, payload: &[u8]) -> bool {
        let Ok(len) = u32::try_from(payload.len()) else {
            self.dropped += 1;
            return false;
        };
        match self.reserve(len) {
            Some(off) => {
                self.data[off..off + payload.len()].copy_from_slice(payload);
                self.commit(off, false)
            }
            None => false,
        }
    }

    /// Discard every reservation still busy (a run ended without submitting).
    pub(crate) fn discard_outstanding(&mut self) {
        if self.outstanding == 0 {
            return;
        }
        let mut pos = self.consumer;
        while pos < self.producer {
            let off = (pos & self.mask) as usize;
            let w = &self.data[off..off + 4];
            let len_word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let len = len_word & !(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT);
            if len_word & RINGBUF_BUSY_BIT != 0 {
                let new = len | RINGBUF_DISCARD_BIT;
                self.data[off..off + 4].copy_from_slice(&new.to_le_bytes());
            }
            pos += record_footprint(len);
        }
        self.outstanding = 0;
    }

    /// Hand every submitted record to `f` in order and free its space.
    /// Returns how many records `f` saw.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        self.consumer = consume_records(&self.data, self.mask, self.consumer, self.producer, |r| {
            n += 1;
            f(r);
        });
        n
    }

    /// Reservations refused for lack of room since creation.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
    /// Bytes reserved and not yet consumed (`BPF_RB_AVAIL_DATA`).
    #[must_use]
    pub fn available(&self) -> u64 {
        self.producer - self.consumer
    }
    #[must_use]
    pub fn producer_pos(&self) -> u64 {
        self.producer
    }
    #[must_use]
    pub fn consumer_pos(&self) -> u64 {
        self.consumer
    }
    /// The doubled data area (programs address it through reservations).
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub(crate) fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_wrap() {
        let mut rb = RingBuf::new(64);
        for round in 0u8..20 {
            assert!(rb.output(&[round; 13]), "round {round}");
            let mut seen = Vec::new();
            assert_eq!(rb.drain(|r| seen.push(r.to_vec())), 1);
            assert_eq!(seen, vec![vec![round; 13]]);
        }
        assert_eq!(rb.dropped(), 0);
    }

    #[test]
    fn busy_blocks_and_discard_skips() {
        let mut rb = RingBuf::new(64);
        let a = rb.reserve(4).expect("room");
        let b = rb.reserve(4).expect("room");
        assert!(rb.output(&[9; 4]));
        assert!(rb.commit(b, false));
        assert_eq!(rb.drain(|_| {}), 0, "first record still busy");
        assert!(rb.commit(a, true));
        let mut n = Vec::new();
        rb.drain(|r| n.push(r.len()));
        assert_eq!(n, vec![4, 4]);
        assert!(!rb.commit(a, false), "double commit refused");
    }

    #[test]
    fn full_ring_drops() {
        let mut rb = RingBuf::new(32);
        assert!(rb.output(&[1; 8]));
        assert!(rb.output(&[1; 8]));
        assert!(!rb.output(&[1; 8]));
        assert_eq!(rb.dropped(), 1);
        assert!(rb.reserve(40).is_none());
    }
}
