//! Helper functions. Unlike rbpf's context-free helpers, each one receives a
//! [`HelperContext`]: the run's memory (to read keys and write results through
//! the same bounds checks as the program), the maps, the platform's clock,
//! CPU and task, the trace log and the random generator. Helpers never fail
//! the run: like the kernel's, they return a negative errno.

use crate::maps::{BPF_EXIST, MapError, errno};
use crate::memory::{MemFault, Memory, REGION_MAP, REGION_MAP_HANDLE, make_ptr, split_ptr};
use crate::platform::{Platform, TaskInfo};
use nexus_insn::Helper;
use std::sync::Arc;

/// Errors registering a helper.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelperError {
    #[error("helper id {id} is already taken by {name}")]
    IdTaken { id: i32, name: String },
}

/// The signature of a custom helper: the context and r1..r5; returns r0.
pub type HelperFn = Arc<dyn Fn(&mut HelperContext<'_, '_>, [u64; 5]) -> u64 + Send + Sync>;

/// The helpers built into the VM.
pub const BUILTIN_HELPERS: &[Helper] = &[
    Helper::MapLookupElem,
    Helper::MapUpdateElem,
    Helper::MapDeleteElem,
    Helper::ProbeRead,
    Helper::KtimeGetNs,
    Helper::TracePrintk,
    Helper::GetPrandomU32,
    Helper::GetSmpProcessorId,
    Helper::GetCurrentPidTgid,
    Helper::GetCurrentUidGid,
    Helper::GetCurrentComm,
    Helper::ProbeReadStr,
    Helper::MapPushElem,
    Helper::MapPopElem,
    Helper::MapPeekElem,
    Helper::ProbeReadUser,
    Helper::ProbeReadKernel,
    Helper::ProbeReadUserStr,
    Helper::ProbeReadKernelStr,
    Helper::KtimeGetBootNs,
    Helper::RingbufOutput,
    Helper::RingbufReserve,
    Helper::RingbufSubmit,
    Helper::RingbufDiscard,
    Helper::RingbufQuery,
];

const CUSTOM_BIT: u32 = 1 << 31;

/// Where a call instruction goes, resolved at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HelperTarget {
    Builtin(Helper),
    Custom(u32),
}

impl HelperTarget {
    pub(crate) fn encode(self) -> u32 {
        match self {
            HelperTarget::Builtin(h) => h as i32 as u32,
            HelperTarget::Custom(i) => CUSTOM_BIT | i,
        }
    }
    pub(crate) fn decode(v: u32) -> Option<HelperTarget> {
        if v & CUSTOM_BIT != 0 {
            Some(HelperTarget::Custom(v & !CUSTOM_BIT))
        } else {
            Helper::from_id(v as i32).map(HelperTarget::Builtin)
        }
    }
}

/// The helpers a VM knows: the built-in ones plus those the host registers.
#[derive(Clone, Default)]
pub struct HelperRegistry {
    custom: Vec<(i32, String, HelperFn)>,
}

impl std::fmt::Debug for HelperRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.custom.iter().map(|(id, name, _)| (id, name)))
            .finish()
    }
}

impl HelperRegistry {
    /// Register `f` under `id`. Ids of built-in helpers cannot be replaced.
    pub fn register(
        &mut self,
        id: i32,
        name: &str,
        f: impl Fn(&mut HelperContext<'_, '_>, [u64; 5]) -> u64 + Send + Sync + 'static,
    ) -> Result<(), HelperError> {
        if let Some(h) = Helper::from_id(id).filter(|h| BUILTIN_HELPERS.contains(h)) {
            return Err(HelperError::IdTaken {
                id,
                name: h.name().to_string(),
            });
        }
        if let Some((_, n, _)) = self.custom.iter().find(|(i, _, _)| *i == id) {
            return Err(HelperError::IdTaken {
                id,
                name: n.clone(),
            });
        }
        self.custom.push((id, name.to_string(), Arc::new(f)));
        Ok(())
    }

    /// Every helper id the VM accepts, with its name, in id order.
    #[must_use]
    pub fn list(&self) -> Vec<(i32, String)> {
        let mut v: Vec<(i32, String)> = BUILTIN_HELPERS
            .iter()
            .map(|h| (*h as i32, h.name().to_string()))
            .chain(self.custom.iter().map(|(i, n, _)| (*i, n.clone())))
            .collect();
        v.sort();
        v
    }

    pub(crate) fn resolve(&self, id: i32) -> Option<HelperTarget> {
        if let Some(h) = Helper::from_id(id).filter(|h| BUILTIN_HELPERS.contains(h)) {
            return Some(HelperTarget::Builtin(h));
        }
        self.custom
            .iter()
            .position(|(i, _, _)| *i == id)
            .map(|p| HelperTarget::Custom(p as u32))
    }

    pub(crate) fn custom(&self, index: u32) -> Option<&HelperFn> {
        self.custom.get(index as usize).map(|(_, _, f)| f)
    }
}

/// What a helper can see and touch during a run.
pub struct HelperContext<'a, 'm> {
    pub(crate) mem: &'a mut Memory<'m>,
    pub(crate) platform: &'a dyn Platform,
    pub(crate) log: &'a mut Vec<String>,
    pub(crate) rng: &'a mut u64,
}

impl std::fmt::Debug for HelperContext<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperContext").finish_non_exhaustive()
    }
}

impl HelperContext<'_, '_> {
    /// `len` bytes the program can read at `addr`.
    pub fn read(&self, addr: u64, len: usize) -> Result<&[u8], MemFault> {
        self.mem.slice(addr, len)
    }
    /// Write `bytes` at `addr`, with the program's own permissions.
    pub fn write(&mut self, addr: u64, bytes: &[u8]) -> Result<(), MemFault> {
        self.mem
            .slice_mut(addr, bytes.len())?
            .copy_from_slice(bytes);
        Ok(())
    }
    #[must_use]
    pub fn platform(&self) -> &dyn Platform {
        self.platform
    }
    #[must_use]
    pub fn task(&self) -> TaskInfo {
        self.platform.current_task()
    }
    /// Append a line to the VM's trace log (what `trace_printk` writes to).
    pub fn log(&mut self, line: String) {
        self.log.push(line);
    }
}

fn neg(e: i64) -> u64 {
    (-e) as u64
}

/// Bytes from program memory copied into `buf` (or `heap` when larger), so
/// a helper can then borrow the maps mutably even when the key lives in one.
fn copy_in<'b>(
    mem: &Memory<'_>,
    addr: u64,
    len: usize,
    buf: &'b mut [u8; 256],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], MemFault> {
    let src = mem.slice(addr, len)?;
    if len <= buf.len() {
        buf[..len].copy_from_slice(src);
        Ok(&buf[..len])
    } else {
        heap.clear();
        heap.extend_from_slice(src);
        Ok(heap)
    }
}

fn map_index(mem: &Memory<'_>, handle: u64) -> Option<usize> {
    let (kind, index, off) = split_ptr(handle);
    (kind == REGION_MAP_HANDLE && off == 0 && (index as usize) < mem.maps.len())
        .then_some(index as usize)
}

fn map_err(e: &MapError) -> u64 {
    neg(e.errno())
}

/// Copy `size` bytes from `src` to `dst`; on any fault zero `dst` and
/// return `-EFAULT`, as `bpf_probe_read` does.
fn probe_read(mem: &mut Memory<'_>, dst: u64, size: u64, src: u64) -> u64 {
    let Ok(size) = usize::try_from(size) else {
        return neg(errno::EINVAL);
    };
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < size {
        let n = (size - done).min(chunk.len());
        let ok = mem
            .slice(src.wrapping_add(done as u64), n)
            .map(|s| chunk[..n].copy_from_slice(s))
            .is_ok()
            && mem
                .slice_mut(dst.wrapping_add(done as u64), n)
                .map(|d| d.copy_from_slice(&chunk[..n]))
                .is_ok();
        if !ok {
            zero(mem, dst, size);
            return neg(errno::EFAULT);
        }
        done += n;
    }
    0
}

fn zero(mem: &mut Memory<'_>, dst: u64, size: usize) {
    if let Ok(d) = mem.slice_mut(dst, size) {
        d.fill(0);
    }
}

/// Copy a NUL-terminated string of at most `size - 1` bytes plus the NUL;
/// returns the length including the NUL, or `-EFAULT` with `dst` zeroed.
fn probe_read_str(mem: &mut Memory<'_>, dst: u64, size: u64, src: u64) -> u64 {
    let Ok(size) = usize::try_from(size) else {
        return neg(errno::EINVAL);
    };
    if size == 0 {
        return 0;
    }
    if mem.slice_mut(dst, size).is_err() {
        return neg(errno::EFAULT);
    }
    let mut i = 0;
    while i < size - 1 {
        let b = match mem.load(src.wrapping_add(i as u64), 1) {
            Ok(b) => b as u8,
            Err(_) => {
                zero(mem, dst, size);
                return neg(errno::EFAULT);
            }
        };
        if b == 0 {
            break;
        }
        // The destination was checked whole above.
        let _ = mem.store(dst.wrapping_add(i as u64), 1, u64::from(b));
        i += 1;
    }
    let _ = mem.store(dst.wrapping_add(i as u64), 1, 0);
    (i + 1) as u64
}

fn read_cstr(mem: &Memory<'_>, addr: u64, max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..max {
        let b = mem.load(addr.wrapping_add(i as u64), 1).ok()? as u8;
        if b == 0 {
            break;
        }
        out.push(b);
    }
    Some(out)
}

/// Format like the kernel's `bpf_trace_printk`: `%d %i %u %x %X %p %c %s %%`
/// with optional `l`/`ll` length modifiers, at most three arguments.
fn format_printk(mem: &Memory<'_>, fmt: &[u8], args: [u64; 3]) -> String {
    let mut out = String::new();
    let mut next = args.iter();
    let mut i = 0;
    while i < fmt.len() {
        let c = fmt[i];
        i += 1;
        if c != b'%' {
            out.push(c as char);
            continue;
        }
        let mut longs = 0;
        while i < fmt.len() && fmt[i] == b'l' {
            longs += 1;
            i += 1;
        }
        let Some(&conv) = fmt.get(i) else {
            out.push('%');
            break;
        };
        i += 1;
        if conv == b'%' {
            out.push('%');
            continue;
        }
        let v = next.next().copied().unwrap_or(0);
        let v32 = longs == 0;
        match conv {
            b'd' | b'i' if v32 => out.push_str(&(v as u32 as i32).to_string()),
            b'd' | b'i' => out.push_str(&(v as i64).to_string()),
            b'u' if v32 => out.push_str(&(v as u32).to_string()),
            b'u' => out.push_str(&v.to_string()),
            b'x' if v32 => out.push_str(&format!("{:x}", v as u32)),
            b'x' => out.push_str(&format!("{v:x}")),
            b'X' if v32 => out.push_str(&format!("{:X}", v as u32)),
            b'X' => out.push_str(&format!("{v:X}")),
            b'p' => out.push_str(&format!("0x{v:x}")),
            b'c' => out.push(v as u8 as char),
            b's' => match read_cstr(mem, v, 256) {
                Some(s) => out.push_str(&String::from_utf8_lossy(&s)),
                None => out.push_str("(efault)"),
            },
            other => {
                out.push('%');
                out.push(other as char);
            }
        }
    }
    out
}

/// Run the built-in helper `h`.
pub(crate) fn call_builtin(h: Helper, cx: &mut HelperContext<'_, '_>, a: [u64; 5]) -> u64 {
    let mut kbuf = [0u8; 256];
    let mut kheap = Vec::new();
    let cpu = cx.platform.current_cpu();
    match h {
        Helper::MapLookupElem => {
            let Some(m) = map_index(cx.mem, a[0]) else {
                return 0;
            };
            let ks = cx.mem.maps[m].spec().key_size as usize;
            let Ok(key) = copy_in(cx.mem, a[1], ks, &mut kbuf, &mut kheap) else {
                return 0;
            };
            match cx.mem.maps[m].lookup_for_cpu(key, cpu) {
                Ok(Some(off)) => make_ptr(REGION_MAP, m as u32, off as u32),
                _ => 0,
            }
        }
        Helper::MapUpdateElem => {
            let Some(m) = map_index(cx.mem, a[0]) else {
                return neg(errno::EINVAL);
            };
            let spec = cx.mem.maps[m].spec();
            let (ks, vs) = (spec.key_size as usize, spec.value_size as usize);
            let mut vbuf = [0u8; 256];
            let mut vheap = Vec::new();
            let Ok(key) = copy_in(cx.mem, a[1], ks, &mut kbuf, &mut kheap) else {
                return neg(errno::EFAULT);
            };
            let Ok(value) = copy_in(cx.mem, a[2], vs, &mut vbuf, &mut vheap) else {
                return neg(errno::EFAULT);
            };
            match cx.mem.maps[m].update_for_cpu(key, value, a[3], cpu) {
                Ok(()) => 0,
                Err(e) => map_err(&e),
            }
        }
        Helper::MapDeleteElem => {
            let Some(m) = map_index(cx.mem, a[0]) else {
                return neg(errno::EINVAL);
            };
            let ks = cx.mem.maps[m].spec().key_size as usize;
            let Ok(key) = copy_in(cx.mem, a[1], ks, &mut kbuf, &mut kheap) else {
                return neg(errno::EFAULT);
            };
            match cx.mem.maps[m].delete(key) {
                Ok(()) => 0,
                Err(e) => map_err(&e),
            }
        }
        Helper::MapPushElem => {
            let Some(m) = map_index(cx.mem, a[0]) else {
                return neg(errno::EINVAL);
            };
            let vs = cx.mem.maps[m].spec().value_size as usize;
            let Ok(value) = copy_in(cx.mem, a[1], vs, &mut kbuf, &mut kheap) else {
                return neg(errno::EFAULT);
            };
            match cx.mem.maps[m].push(value, a[2] & BPF_EXIST) {
                Ok(()) => 0,
                Err(e) => map_err(&e),
            }
        }
        Helper::MapPopElem | Helper::MapPeekElem => {
            let Some(m) = map_index(cx.mem, a[0]) else {
                return neg(errno::EINVAL);
            };
            let got = if h == Helper::MapPopElem {
                cx.mem.maps[m].pop()
            } else {
                cx.mem.maps[m].peek()
            };
            match got {
                Ok(v) => match cx.write(a[1], &v) {
                    Ok(()) => 0,
                    Err(_) => neg(errno::EFAULT),
                },
                Err(e) => map_err(&e),
            }
        }
        Helper::ProbeRead | Helper::ProbeReadUser | Helper::ProbeReadKernel => {
            probe_read(cx.mem, a[0], a[1], a[2])
        }
        Helper::ProbeReadStr | Helper::ProbeReadUserStr | Helper::ProbeReadKernelStr => {
            probe_read_str(cx.mem, a[0], a[1], a[2])
        }
        Helper::KtimeGetNs | Helper::KtimeGetBootNs => cx.platform.ktime_ns(),
        Helper::TracePrintk => {
            let Ok(size) = usize::try_from(a[1]) else {
                return neg(errno::EINVAL);
            };
            let Ok(fmt) = cx.mem.slice(a[0], size) else {
                return neg(errno::EFAULT);
            };
            let end = fmt.iter().position(|b| *b == 0).unwrap_or(fmt.len());
            let line = format_printk(cx.mem, &fmt[..end], [a[2], a[3], a[4]]);
            let n = line.len() as u64;
            cx.log.push(line);
            n
        }
        Helper::GetPrandomU32 => {
            // xorshift64*: deterministic for a given seed, cheap, not crypto.
            let mut x = *cx.rng;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            *cx.rng = x;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32 as u64
        }
        Helper::GetSmpProcessorId => u64::from(cpu),
        Helper::GetCurrentPidTgid => {
            let t = cx.platform.current_task();
            (u64::from(t.tgid) << 32) | u64::from(t.pid)
        }
        Helper::GetCurrentUidGid => {
            let t = cx.platform.current_task();
            (u64::from(t.gid) << 32) | u64::from(t.uid)
        }
        Helper::GetCurrentComm => {
            let Ok(size) = usize::try_from(a[1]) else {
                return neg(errno::EINVAL);
            };
            let t = cx.platform.current_task();
            match cx.mem.slice_mut(a[0], size) {
                Ok(d) => {
                    d.fill(0);
                    let n = size.saturating_sub(1).min(15);
                    d[..n].copy_from_slice(&t.comm[..n]);
                    0
                }
                Err(_) => neg(errno::EFAULT),
            }
        }
        Helper::RingbufOutput => {
            let Some(m) = map_index(cx.mem, a[0]) else {
                return neg(errno::EINVAL);
            };
            let Ok(len) = usize::try_from(a[2]) else {
                return neg(errno::EINVAL);
            };
            let Ok(data) = copy_in(cx.mem, a[1], len, &mut kbuf, &mut kheap) else {
                return neg(errno::EFAULT);
            };
            match cx.mem.maps[m].ringbuf().map(|rb| rb.output(data)) {
                Some(true) => 0,
                Some(false) => neg(errno::ENOSPC),
                None => neg(errno::EINVAL),
            }
        }
        Helper::RingbufReserve => {
            let Some(m) = map_index(cx.mem, a[0]) else {
                return 0;
            };
            let Ok(len) = u32::try_from(a[1]) else {
                return 0;
            };
            match cx.mem.maps[m].ringbuf().and_then(|rb| rb.reserve(len)) {
                Some(off) => make_ptr(REGION_MAP, m as u32, off as u32),
                None => 0,
            }
        }
        Helper::RingbufSubmit | Helper::RingbufDiscard => {
            let (kind, index, off) = split_ptr(a[0]);
            if kind == REGION_MAP
                && let Some(rb) = cx
                    .mem
                    .maps
                    .get_mut(index as usize)
                    .and_then(|m| m.ringbuf())
            {
                rb.commit(off as usize, h == Helper::RingbufDiscard);
            }
            0
        }
        Helper::RingbufQuery => {
            let Some(rb) = map_index(cx.mem, a[0]).and_then(|m| cx.mem.maps[m].ringbuf_ref())
            else {
                return 0;
            };
            match a[1] {
                0 => rb.available(),
                1 => rb.size(),
                2 => rb.consumer_pos(),
                3 => rb.producer_pos(),
                _ => 0,
            }
        }
        // `resolve` only hands out the helpers listed in BUILTIN_HELPERS.
        _ => neg(errno::EOPNOTSUPP),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Ctx, REGION_CTX};

    #[test]
    fn printk_formats_like_the_kernel() {
        let mut stack = [0u8; 8];
        let mem = Memory {
            ctx: Ctx::ReadOnly(b"hi\0"),
            stack: &mut stack,
            stack_lo: 0,
            maps: &mut [],
            host: &mut [],
        };
        let s = format_printk(
            &mem,
            b"a=%d c=%x s=%s %%",
            [(-5i32) as u32 as u64, 255, make_ptr(REGION_CTX, 0, 0)],
        );
        assert_eq!(s, "a=-5 c=ff s=hi %");
        let s = format_printk(&mem, b"%llu %lld %c", [7, u64::MAX, u64::from(b'z')]);
        assert_eq!(s, "7 -1 z");
    }

    #[test]
    fn custom_ids_cannot_shadow_builtins() {
        let mut r = HelperRegistry::default();
        assert!(r.register(1, "mine", |_, _| 0).is_err());
        r.register(100, "get_current_vm_id", |_, _| 7)
            .expect("free id");
        assert!(r.register(100, "again", |_, _| 0).is_err());
        assert_eq!(r.resolve(100), Some(HelperTarget::Custom(0)));
        assert_eq!(r.resolve(12), None, "tail_call is not built in");
        assert!(r.list().contains(&(100, "get_current_vm_id".to_string())));
    }
}
