//! The one choke point through which bpfnexus calls `bpf(2)`,
//! `perf_event_open(2)`, `ioctl(2)`, `mmap(2)` and `munmap(2)`.
//!
//! Every other module builds its arguments as plain bytes ([`BpfAttr`],
//! [`PerfEventAttr`]) and calls the free functions here. They go to the real
//! kernel ([`RealSys`]) unless a test installed a replacement [`Sys`] for the
//! current thread with [`override_for_thread`], so code above can be tested
//! without root by a mock that inspects the attribute bytes.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::rc::Rc;

/// `enum bpf_cmd` values used by this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum BpfCmd {
    MapCreate = 0,
    MapLookupElem = 1,
    MapUpdateElem = 2,
    MapDeleteElem = 3,
    MapGetNextKey = 4,
    ProgLoad = 5,
    ProgTestRun = 10,
    ProgGetNextId = 11,
    ObjGetInfoByFd = 15,
    RawTracepointOpen = 17,
    MapLookupAndDeleteElem = 21,
    MapLookupBatch = 24,
    MapLookupAndDeleteBatch = 25,
    LinkCreate = 28,
}

/// Size of the `union bpf_attr` prefix we pass: it covers every field of
/// every command above (`BPF_PROG_LOAD` ends at `log_true_size`, byte 144).
/// Older/newer kernels accept any size as long as unknown tail bytes are zero.
pub const BPF_ATTR_SIZE: usize = 144;

/// The bytes of a `union bpf_attr`, written field by field at the offsets of
/// `include/uapi/linux/bpf.h`. Unwritten bytes stay zero, which the kernel
/// requires for fields a command doesn't use.
#[derive(Clone, PartialEq, Eq)]
pub struct BpfAttr {
    bytes: [u8; BPF_ATTR_SIZE],
}

impl Default for BpfAttr {
    fn default() -> Self {
        BpfAttr {
            bytes: [0; BPF_ATTR_SIZE],
        }
    }
}

impl fmt::Debug for BpfAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self
            .bytes
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        write!(f, "BpfAttr({:02x?})", &self.bytes[..last])
    }
}

impl BpfAttr {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    pub fn set_u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.bytes[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn set_u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.bytes[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    /// Store a pointer as the kernel's `__aligned_u64` user pointer.
    pub fn set_ptr<T>(&mut self, off: usize, p: *const T) -> &mut Self {
        self.set_u64(off, p as usize as u64)
    }
    pub fn set_bytes(&mut self, off: usize, b: &[u8]) -> &mut Self {
        self.bytes[off..off + b.len()].copy_from_slice(b);
        self
    }
    #[must_use]
    pub fn u32_at(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[off..off + 4]);
        u32::from_ne_bytes(b)
    }
    #[must_use]
    pub fn u64_at(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[off..off + 8]);
        u64::from_ne_bytes(b)
    }
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; BPF_ATTR_SIZE] {
        &self.bytes
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.bytes.as_mut_ptr()
    }
}

/// `struct perf_event_attr` (the `PERF_ATTR_SIZE_VER7` prefix, 128 bytes),
/// with the fields bpfnexus sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerfEventAttr {
    pub type_: u32,
    pub config: u64,
    /// `sample_period`, or `sample_freq` when `freq` is set.
    pub sample_period_or_freq: u64,
    pub sample_type: u64,
    pub disabled: bool,
    pub freq: bool,
    pub wakeup_events: u32,
    /// For the kprobe/uprobe PMUs: a user pointer to the function name or path.
    pub config1: u64,
    /// For the kprobe/uprobe PMUs: the offset.
    pub config2: u64,
}

/// `PERF_ATTR_SIZE_VER7`.
pub const PERF_ATTR_SIZE: usize = 128;

impl PerfEventAttr {
    /// Lay the attribute out as the kernel reads it.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; PERF_ATTR_SIZE] {
        let mut b = [0u8; PERF_ATTR_SIZE];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.type_.to_ne_bytes());
        put(4, &(PERF_ATTR_SIZE as u32).to_ne_bytes());
        put(8, &self.config.to_ne_bytes());
        put(16, &self.sample_period_or_freq.to_ne_bytes());
        put(24, &self.sample_type.to_ne_bytes());
        // The flag bitfield: bit 0 `disabled`, bit 10 `freq`.
        let flags = u64::from(self.disabled) | (u64::from(self.freq) << 10);
        put(40, &flags.to_ne_bytes());
        put(48, &self.wakeup_events.to_ne_bytes());
        put(56, &self.config1.to_ne_bytes());
        put(64, &self.config2.to_ne_bytes());
        b
    }
}

/// `PERF_FLAG_FD_CLOEXEC`.
pub const PERF_FLAG_FD_CLOEXEC: u64 = 8;
/// `PERF_EVENT_IOC_ENABLE` (`_IO('$', 0)`).
pub const PERF_EVENT_IOC_ENABLE: u64 = 0x2400;

/// The system calls bpfnexus makes. Replace it per thread with
/// [`override_for_thread`] to test code above without a kernel.
pub trait Sys {
    /// `bpf(cmd, attr, BPF_ATTR_SIZE)`. Returns the non-negative result; the
    /// kernel may write results back into `attr`.
    ///
    /// Pointers stored in `attr` must be valid for the duration of the call,
    /// for the access the command performs.
    fn bpf(&self, cmd: BpfCmd, attr: &mut BpfAttr) -> io::Result<i64>;
    /// `perf_event_open(attr, pid, cpu, group_fd = -1, flags)`.
    fn perf_event_open(
        &self,
        attr: &PerfEventAttr,
        pid: i32,
        cpu: i32,
        flags: u64,
    ) -> io::Result<OwnedFd>;
    /// `ioctl(fd, request, arg)` for integer-argument requests.
    fn ioctl(&self, fd: BorrowedFd<'_>, request: u64, arg: u64) -> io::Result<i32>;
    /// `mmap(NULL, len, prot, MAP_SHARED, fd, offset)`.
    fn mmap_shared(
        &self,
        fd: BorrowedFd<'_>,
        len: usize,
        prot: i32,
        offset: i64,
    ) -> io::Result<*mut u8>;
    /// `munmap(addr, len)` of a region returned by [`Sys::mmap_shared`].
    fn munmap(&self, addr: *mut u8, len: usize) -> io::Result<()>;
}

/// The real system calls, through `libc::syscall`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealSys;

fn cvt(r: i64) -> io::Result<i64> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Sys for RealSys {
    fn bpf(&self, cmd: BpfCmd, attr: &mut BpfAttr) -> io::Result<i64> {
        // SAFETY: `attr` is a live, writable buffer of BPF_ATTR_SIZE bytes; any
        // pointers inside it were stored by callers who keep their targets
        // alive across this call (documented contract of `Sys::bpf`).
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd as libc::c_long,
                attr.as_mut_ptr(),
                BPF_ATTR_SIZE as libc::c_long,
            )
        };
        cvt(r)
    }

    fn perf_event_open(
        &self,
        attr: &PerfEventAttr,
        pid: i32,
        cpu: i32,
        flags: u64,
    ) -> io::Result<OwnedFd> {
        let bytes = attr.to_bytes();
        // SAFETY: `bytes` is a valid perf_event_attr of the size its `size`
        // field states; config1 (if a pointer) is kept alive by the caller.
        let r = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                bytes.as_ptr(),
                pid as libc::c_long,
                cpu as libc::c_long,
                -1 as libc::c_long,
                flags as libc::c_long,
            )
        };
        let fd = cvt(r)?;
        // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    fn ioctl(&self, fd: BorrowedFd<'_>, request: u64, arg: u64) -> io::Result<i32> {
        // SAFETY: only integer-argument requests go through here, so the
        // kernel does not dereference `arg`.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg as libc::c_ulong) };
        cvt(i64::from(r)).map(|r| r as i32)
    }

    fn mmap_shared(
        &self,
        fd: BorrowedFd<'_>,
        len: usize,
        prot: i32,
        offset: i64,
    ) -> io::Result<*mut u8> {
        // SAFETY: we ask for a fresh mapping (addr = NULL), so no existing
        // memory is affected; the caller owns the region and unmaps it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            Err(io::Error::last_os_error())
        } else {
            Ok(p.cast())
        }
    }

    fn munmap(&self, addr: *mut u8, len: usize) -> io::Result<()> {
        // SAFETY: the caller passes a region it got from `mmap_shared` and
        // no longer references.
        let r = unsafe { libc::munmap(addr.cast(), len) };
        cvt(i64::from(r)).map(|_| ())
    }
}

thread_local! {
    static OVERRIDE: RefCell<Option<Rc<dyn Sys>>> = const { RefCell::new(None) };
}

/// Restores the previous [`Sys`] of this thread when dropped.
#[must_use = "the override ends when the guard is dropped"]
pub struct SysOverrideGuard {
    prev: Option<Rc<dyn Sys>>,
}

impl fmt::Debug for SysOverrideGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SysOverrideGuard")
    }
}

impl Drop for SysOverrideGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        OVERRIDE.with(|o| *o.borrow_mut() = prev);
    }
}

/// Route this thread's system calls to `sys` until the guard is dropped.
pub fn override_for_thread(sys: Rc<dyn Sys>) -> SysOverrideGuard {
    let prev = OVERRIDE.with(|o| o.borrow_mut().replace(sys));
    SysOverrideGuard { prev }
}

fn current() -> Option<Rc<dyn Sys>> {
    OVERRIDE.with(|o| o.borrow().clone())
}

/// `bpf(2)` through the current [`Sys`].
pub fn bpf(cmd: BpfCmd, attr: &mut BpfAttr) -> io::Result<i64> {
    match current() {
        Some(s) => s.bpf(cmd, attr),
        None => RealSys.bpf(cmd, attr),
    }
}

/// `bpf(2)` for commands that return a new file descriptor.
pub fn bpf_fd(cmd: BpfCmd, attr: &mut BpfAttr) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf returned an invalid fd"))?;
    // SAFETY: the command returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `perf_event_open(2)` through the current [`Sys`], close-on-exec.
pub fn perf_event_open(attr: &PerfEventAttr, pid: i32, cpu: i32) -> io::Result<OwnedFd> {
    match current() {
        Some(s) => s.perf_event_open(attr, pid, cpu, PERF_FLAG_FD_CLOEXEC),
        None => RealSys.perf_event_open(attr, pid, cpu, PERF_FLAG_FD_CLOEXEC),
    }
}

/// `ioctl(2)` through the current [`Sys`].
pub fn ioctl(fd: BorrowedFd<'_>, request: u64, arg: u64) -> io::Result<i32> {
    match current() {
        Some(s) => s.ioctl(fd, request, arg),
        None => RealSys.ioctl(fd, request, arg),
    }
}

/// `mmap(2)` (shared) through the current [`Sys`].
pub fn mmap_shared(fd: BorrowedFd<'_>, len: usize, prot: i32, offset: i64) -> io::Result<*mut u8> {
    match current() {
        Some(s) => s.mmap_shared(fd, len, prot, offset),
        None => RealSys.mmap_shared(fd, len, prot, offset),
    }
}

/// `munmap(2)` through the current [`Sys`].
pub fn munmap(addr: *mut u8, len: usize) -> io::Result<()> {
    match current() {
        Some(s) => s.munmap(addr, len),
        None => RealSys.munmap(addr, len),
    }
}

/// The system page size.
#[must_use]
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<(BpfCmd, BpfAttr)>>,
    }

    impl Sys for Recorder {
        fn bpf(&self, cmd: BpfCmd, attr: &mut BpfAttr) -> io::Result<i64> {
            self.calls.borrow_mut().push((cmd, attr.clone()));
            Err(io::Error::from_raw_os_error(libc::EPERM))
        }
        fn perf_event_open(
            &self,
            _: &PerfEventAttr,
            _: i32,
            _: i32,
            _: u64,
        ) -> io::Result<OwnedFd> {
            Err(io::Error::from_raw_os_error(libc::ENOENT))
        }
        fn ioctl(&self, _: BorrowedFd<'_>, _: u64, _: u64) -> io::Result<i32> {
            Ok(0)
        }
        fn mmap_shared(&self, _: BorrowedFd<'_>, _: usize, _: i32, _: i64) -> io::Result<*mut u8> {
            Err(io::Error::from_raw_os_error(libc::ENOMEM))
        }
        fn munmap(&self, _: *mut u8, _: usize) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn override_routes_calls_and_restores() {
        let rec = Rc::new(Recorder::default());
        {
            let _g = override_for_thread(rec.clone());
            let mut a = BpfAttr::new();
            a.set_u32(0, 2).set_u32(4, 4);
            let e = bpf(BpfCmd::MapCreate, &mut a).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        }
        let calls = rec.calls.borrow();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0, BpfCmd::MapCreate);
        assert_eq!(calls[0].1.u32_at(4), 4);
        assert!(current().is_none());
    }

    #[test]
    fn perf_attr_layout() {
        let a = PerfEventAttr {
            type_: 1,
            config: 0,
            sample_period_or_freq: 99,
            freq: true,
            disabled: true,
            config2: 0x1234,
            ..Default::default()
        };
        let b = a.to_bytes();
        assert_eq!(u32::from_ne_bytes(b[4..8].try_into().unwrap()), 128);
        assert_eq!(u64::from_ne_bytes(b[16..24].try_into().unwrap()), 99);
        assert_eq!(
            u64::from_ne_bytes(b[40..48].try_into().unwrap()),
            1 | 1 << 10
        );
        assert_eq!(u64::from_ne_bytes(b[64..72].try_into().unwrap()), 0x1234);
    }
}
