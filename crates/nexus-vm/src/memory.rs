//! Region-tagged memory. A pointer a program holds is a `u64` whose top byte
//! names the region kind, the next three bytes the region's index (a map, a
//! registered host block) and the low 32 bits the offset into it. Every
//! access is resolved through [`Memory`] and bounds-checked against the
//! region, so no program — verified or not — can reach other host memory.
//! Region kind 0 is never mapped, so NULL and small integers always fault.

use crate::maps::Map;

/// The program's context (r1 at entry).
pub const REGION_CTX: u8 = 1;
/// The stacks of every call frame, one after another.
pub const REGION_STACK: u8 = 2;
/// Values of map `index` (including ring-buffer reservations).
pub const REGION_MAP: u8 = 3;
/// A block the host registered with [`crate::Vm::register_memory`].
pub const REGION_HOST: u8 = 4;
/// Not memory: the handle `LD_IMM64` with `BPF_PSEUDO_MAP_IDX` loads.
pub const REGION_MAP_HANDLE: u8 = 5;

/// Build a pointer.
#[must_use]
pub const fn make_ptr(kind: u8, index: u32, offset: u32) -> u64 {
    ((kind as u64) << 56) | (((index & 0x00ff_ffff) as u64) << 32) | offset as u64
}

/// Split a pointer into (kind, index, offset).
#[must_use]
pub const fn split_ptr(addr: u64) -> (u8, u32, u32) {
    (
        (addr >> 56) as u8,
        ((addr >> 32) & 0x00ff_ffff) as u32,
        addr as u32,
    )
}

/// Why an access was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemFault {
    #[error("address {addr:#x} is not in any region (NULL or not a pointer)")]
    Unmapped { addr: u64 },
    #[error("{len}-byte access at {addr:#x} is outside the {region} ({size} bytes)")]
    OutOfBounds {
        addr: u64,
        len: usize,
        region: &'static str,
        size: usize,
    },
    #[error("{len}-byte access at {addr:#x} crosses the end of a {value_size}-byte map value")]
    CrossesValue {
        addr: u64,
        len: usize,
        value_size: usize,
    },
    #[error("write to read-only {region} at {addr:#x}")]
    ReadOnly { addr: u64, region: &'static str },
}

/// A memory block the host lends to programs.
#[derive(Debug)]
pub struct HostRegion {
    pub(crate) data: Vec<u8>,
    pub(crate) writable: bool,
    pub(crate) live: bool,
}

/// The context a run sees: read-only (tracepoint arguments) or writable.
#[derive(Debug)]
pub enum Ctx<'a> {
    ReadOnly(&'a [u8]),
    Writable(&'a mut [u8]),
}

/// Every region one run can reach.
#[derive(Debug)]
pub struct Memory<'a> {
    pub(crate) ctx: Ctx<'a>,
    /// The stacks of every call frame; frame 0 at the top, callees below.
    pub(crate) stack: &'a mut [u8],
    /// Lowest stack offset in use: the bottom of the current frame. Frames
    /// below it belong to calls that returned (or never happened).
    pub(crate) stack_lo: usize,
    pub(crate) maps: &'a mut [Map],
    pub(crate) host: &'a mut [HostRegion],
}

#[inline]
fn bounded(
    addr: u64,
    off: usize,
    len: usize,
    size: usize,
    region: &'static str,
) -> Result<std::ops::Range<usize>, MemFault> {
    match off.checked_add(len) {
        Some(end) if end <= size => Ok(off..end),
        _ => Err(MemFault::OutOfBounds {
            addr,
            len,
            region,
            size,
        }),
    }
}

/// An access to a map value must stay inside one value.
#[inline]
fn within_value(
    addr: u64,
    off: usize,
    len: usize,
    stride: usize,
    value_size: usize,
) -> Result<(), MemFault> {
    if stride == 0 {
        // Ring-buffer data: bounded by the buffer only.
        return Ok(());
    }
    if off % stride + len > value_size {
        return Err(MemFault::CrossesValue {
            addr,
            len,
            value_size,
        });
    }
    Ok(())
}

impl Memory<'_> {
    #[inline]
    fn stack_range(
        &self,
        addr: u64,
        off: usize,
        len: usize,
    ) -> Result<std::ops::Range<usize>, MemFault> {
        if off < self.stack_lo {
            return Err(MemFault::OutOfBounds {
                addr,
                len,
                region: "stack",
                size: self.stack.len() - self.stack_lo,
            });
        }
        bounded(addr, off, len, self.stack.len(), "stack")
    }

    /// `len` readable bytes at `addr`.
    #[inline]
    pub fn slice(&self, addr: u64, len: usize) -> Result<&[u8], MemFault> {
        let (kind, index, off) = split_ptr(addr);
        let off = off as usize;
        match kind {
            REGION_STACK => {
                let r = self.stack_range(addr, off, len)?;
                Ok(&self.stack[r])
            }
            REGION_CTX => {
                let ctx: &[u8] = match &self.ctx {
                    Ctx::ReadOnly(c) => c,
                    Ctx::Writable(c) => c,
                };
                let r = bounded(addr, off, len, ctx.len(), "context")?;
                Ok(&ctx[r])
            }
            REGION_MAP => {
                let map = self
                    .maps
                    .get(index as usize)
                    .ok_or(MemFault::Unmapped { addr })?;
                let (mem, stride, vs) = map.memory();
                let r = bounded(addr, off, len, mem.len(), "map memory")?;
                within_value(addr, off, len, stride, vs)?;
                Ok(&mem[r])
            }
            REGION_HOST => {
                let h = self
                    .host
                    .get(index as usize)
                    .filter(|h| h.live)
                    .ok_or(MemFault::Unmapped { addr })?;
                let r = bounded(addr, off, len, h.data.len(), "host memory")?;
                Ok(&h.data[r])
            }
            _ => Err(MemFault::Unmapped { addr }),
        }
    }

    /// `len` writable bytes at `addr`.
    #[inline]
    pub fn slice_mut(&mut self, addr: u64, len: usize) -> Result<&mut [u8], MemFault> {
        let (kind, index, off) = split_ptr(addr);
        let off = off as usize;
        match kind {
            REGION_STACK => {
                let r = self.stack_range(addr, off, len)?;
                Ok(&mut self.stack[r])
            }
            REGION_CTX => match &mut self.ctx {
                Ctx::ReadOnly(_) => Err(MemFault::ReadOnly {
                    addr,
                    region: "context",
                }),
                Ctx::Writable(c) => {
                    let r = bounded(addr, off, len, c.len(), "context")?;
                    Ok(&mut c[r])
                }
            },
            REGION_MAP => {
                let map = self
                    .maps
                    .get_mut(index as usize)
                    .ok_or(MemFault::Unmapped { addr })?;
                let (mem, stride, vs) = map.memory_mut();
                let r = bounded(addr, off, len, mem.len(), "map memory")?;
                within_value(addr, off, len, stride, vs)?;
                Ok(&mut mem[r])
            }
            REGION_HOST => {
                let h = self
                    .host
                    .get_mut(index as usize)
                    .filter(|h| h.live)
                    .ok_or(MemFault::Unmapped { addr })?;
                if !h.writable {
                    return Err(MemFault::ReadOnly {
                        addr,
                        region: "host memory",
                    });
                }
                let r = bounded(addr, off, len, h.data.len(), "host memory")?;
                Ok(&mut h.data[r])
            }
            _ => Err(MemFault::Unmapped { addr }),
        }
    }

    /// Read a little-endian integer of 1, 2, 4 or 8 bytes.
    #[inline]
    pub fn load(&self, addr: u64, size: usize) -> Result<u64, MemFault> {
        let b = self.slice(addr, size)?;
        Ok(le_value(b))
    }

    /// Write the low `size` bytes of `value`, little-endian.
    #[inline]
    pub fn store(&mut self, addr: u64, size: usize, value: u64) -> Result<(), MemFault> {
        let b = self.slice_mut(addr, size)?;
        b.copy_from_slice(&value.to_le_bytes()[..size]);
        Ok(())
    }
}

/// The little-endian value of 1, 2, 4 or 8 bytes.
#[inline]
pub(crate) fn le_value(b: &[u8]) -> u64 {
    match *b {
        [a] => u64::from(a),
        [a, c] => u64::from(u16::from_le_bytes([a, c])),
        [a, c, d, e] => u64::from(u32::from_le_bytes([a, c, d, e])),
        [a, c, d, e, f, g, h, i] => u64::from_le_bytes([a, c, d, e, f, g, h, i]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_round_trip_and_null_faults() {
        let p = make_ptr(REGION_MAP, 7, 0x1234);
        assert_eq!(split_ptr(p), (REGION_MAP, 7, 0x1234));
        let mut stack = [0u8; 16];
        let mem = Memory {
            ctx: Ctx::ReadOnly(&[1, 2, 3]),
            stack: &mut stack,
            stack_lo: 0,
            maps: &mut [],
            host: &mut [],
        };
        assert!(matches!(mem.load(0, 8), Err(MemFault::Unmapped { .. })));
        assert_eq!(
            mem.load(make_ptr(REGION_CTX, 0, 1), 2).expect("in bounds"),
            0x0302
        );
        assert!(matches!(
            mem.load(make_ptr(REGION_CTX, 0, 2), 2),
            Err(MemFault::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.load(make_ptr(REGION_CTX, 0, u32::MAX), 8),
            Err(MemFault::OutOfBounds { .. })
        ));
    }
}
