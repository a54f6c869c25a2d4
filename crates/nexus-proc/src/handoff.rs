//! Handing descriptors whose last close is slow to a short-lived
//! background process.
//!
//! Some kernel objects make the close of their last descriptor wait: a
//! perf-based BPF link, for one, waits for RCU grace periods (40–130 ms
//! each on the machine this was measured on), and the kernel serialises
//! much of it. When nothing needs to wait for those closes, [`hand_off`]
//! moves them off the caller's path.
//!
//! [`hand_off`] forks a helper that keeps its inherited copies of the given
//! descriptors and closes every other descriptor at once (so it does not
//! hold the caller's pipes or terminal open). The caller then drops its own
//! copies, which is fast because the helper's copies keep the kernel
//! objects alive, and then drops the returned [`HandoffGate`]. Only then
//! (it waits for end-of-file on a pipe) does the helper release the
//! descriptors and exit: were it to close first, the caller's close would
//! be the last reference and the caller would wait after all (measured: a
//! 1.44 s parent close against 0.02 ms in the helper). The helper is a
//! grandchild (double fork), so init reaps it and the caller never has a
//! zombie even if it keeps running (a library user such as an agent).
//!
//! The helper releases the descriptors from up to [`MAX_CLOSERS`]
//! processes at once, one per descriptor: closing 20 classic tracepoint
//! links one by one took 1.41–1.42 s here; from 4 processes 0.73–1.10 s,
//! from 8 0.80–1.06 s, from 20 0.60–0.72 s (20 threads in the caller:
//! 0.75–0.85 s). Only the last close waits, so each *closer* must hold the
//! last reference to its share and to nothing else: the helper forks the
//! closers, each closes the descriptors outside its share (cheap: the
//! helper still holds them) and says so by closing its end of a *ready*
//! pipe; then the helper closes all its copies (cheap: each closer holds
//! its share) and opens the *go* gate by closing its end of that pipe; the
//! closers close their shares, in parallel, and exit. The helper reaps
//! them and reports.
//!
//! The caller may be multi-threaded, so after `fork` the children call
//! only async-signal-safe functions: `fork` (the raw syscall in the
//! intermediate child, which is single-threaded), `close_range`/`close`,
//! `pipe`, `read`, `waitpid`, `clock_gettime`, `write` and `_exit`.
//! Everything they read (the descriptors to keep, the report line) is
//! prepared before the fork.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Why a handoff could not be made; the caller closes in place instead.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// `fork` failed.
    #[error("forking the background close process failed: {0}")]
    Fork(#[source] std::io::Error),
    /// The pipe that orders the closes could not be made.
    #[error("creating the background close gate pipe failed: {0}")]
    Pipe(#[source] std::io::Error),
    /// Waiting for the intermediate child failed.
    #[error("waiting for the background close process to start failed: {0}")]
    Wait(#[source] std::io::Error),
    /// The intermediate child could not fork the helper.
    #[error("the background close process could not be started (intermediate child status {0})")]
    Start(i32),
}

/// A handoff that was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// Distinct descriptors the helper closes.
    pub descriptors: usize,
    /// The intermediate child's pid (the helper is its child, reparented to
    /// init; the kernel does not tell us the grandchild's pid here).
    pub forked_pid: u32,
    /// What the handoff cost the caller (forks and the wait for the
    /// intermediate child).
    pub elapsed: Duration,
}

/// The line the helper writes on stderr once every descriptor is closed:
/// `{lead} N {noun}s in X ms from K processes` (singular for one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StderrReport<'a> {
    /// What starts the line, e.g. `"tool: background close closed"`.
    pub lead: &'a str,
    /// What a descriptor is called, singular, e.g. `"descriptor"`.
    pub noun: &'a str,
}

/// How to hand off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HandoffOptions<'a> {
    /// `None`: the helper closes stderr at once with everything else.
    /// `Some`: it keeps stderr open and writes this line when done.
    pub report: Option<StderrReport<'a>>,
}

/// Held by the caller until it has closed its own copies of the handed-off
/// descriptors; dropping it (or exiting) lets the helper close them.
#[derive(Debug)]
pub struct HandoffGate {
    _write_end: OwnedFd,
}

/// Exit status of the intermediate child when its fork failed.
const START_FAILED: i32 = 71;

/// Most processes that close descriptors at the same time. A classic
/// tracepoint close mostly waits for RCU grace periods, which overlap
/// between closers, so one closer per descriptor is fastest (measured up to 20);
/// a closer costs a fork of the small helper, off the caller's path.
pub const MAX_CLOSERS: usize = 32;

/// Fork a helper that keeps `keep` open and closes everything else now;
/// once the returned gate is dropped it closes `keep` (from up to
/// [`MAX_CLOSERS`] processes) and exits. The caller still owns `keep`:
/// close those copies, then drop the gate.
///
/// Descriptors are taken by number (anything [`AsRawFd`], so
/// `BorrowedFd`, `OwnedFd` or a `RawFd`): only the helper's inherited
/// copies are ever closed, never the caller's, so a number that is not
/// open is merely not kept. Negative numbers are ignored.
pub fn hand_off<F: AsRawFd>(
    keep: &[F],
    options: &HandoffOptions<'_>,
) -> Result<(Handoff, HandoffGate), HandoffError> {
    let start = Instant::now();
    let (gate_read, gate_write) = cloexec_pipe().map_err(HandoffError::Pipe)?;
    let gate = gate_read.as_raw_fd();
    let mut keep: Vec<RawFd> = keep
        .iter()
        .map(AsRawFd::as_raw_fd)
        .filter(|&fd| fd >= 0)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let keep_stderr = options.report.is_some();
    if keep_stderr {
        // stderr is closed last, after the report is written.
        keep.retain(|&fd| fd != libc::STDERR_FILENO);
    }
    let mut keep_set = keep.clone();
    keep_set.push(gate);
    if keep_stderr {
        keep_set.push(libc::STDERR_FILENO);
    }
    keep_set.sort_unstable();
    // One closer per descriptor (see MAX_CLOSERS).
    let closers = keep.len().clamp(1, MAX_CLOSERS);
    let (prefix, suffix) = match options.report {
        Some(r) => (
            format!(
                "{} {} {}{} in ",
                r.lead,
                keep.len(),
                r.noun,
                if keep.len() == 1 { "" } else { "s" }
            ),
            format!(
                " ms from {closers} process{}\n",
                if closers == 1 { "" } else { "es" }
            ),
        ),
        None => (String::new(), String::new()),
    };
    let line = ReportLine {
        prefix: prefix.as_bytes(),
        suffix: suffix.as_bytes(),
    };

    // SAFETY: fork has no memory preconditions. In the child we call only
    // async-signal-safe functions (see `intermediate`) and never return
    // into Rust code that could take locks held by other parent threads.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(HandoffError::Fork(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        intermediate(&keep_set, &keep, gate, closers, keep_stderr.then_some(line));
    }
    drop(gate_read);
    let status = wait_for(pid)?;
    if status != 0 {
        return Err(HandoffError::Start(status));
    }
    Ok((
        Handoff {
            descriptors: keep.len(),
            forked_pid: u32::try_from(pid).unwrap_or(0),
            elapsed: start.elapsed(),
        },
        HandoffGate {
            _write_end: gate_write,
        },
    ))
}

/// A close-on-exec pipe as `(read, write)`.
fn cloexec_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is two writable ints for the kernel to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the call succeeded, so both descriptors are fresh and owned
    // by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reap the intermediate child; its exit status.
fn wait_for(pid: libc::pid_t) -> Result<i32, HandoffError> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable int for the call.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            });
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(HandoffError::Wait(e));
        }
    }
}

/// The intermediate child: fork the helper and exit, so the helper is
/// reparented to init (which reaps it). Never returns.
fn intermediate(
    keep_set: &[RawFd],
    slow: &[RawFd],
    gate: RawFd,
    closers: usize,
    report: Option<ReportLine<'_>>,
) -> ! {
    // SAFETY: this process is single-threaded (only the forking thread
    // survives fork), and the raw syscall runs no atfork handlers.
    let pid = unsafe { libc::syscall(libc::SYS_fork) };
    if pid == 0 {
        helper(keep_set, slow, gate, closers, report);
    }
    let status = if pid < 0 { START_FAILED } else { 0 };
    // SAFETY: _exit is async-signal-safe and ends this process without
    // running Rust or libc cleanup that belongs to the parent.
    unsafe { libc::_exit(status) }
}

/// The `-v` line the helper writes, prepared before the fork.
#[derive(Clone, Copy)]
struct ReportLine<'a> {
    /// Up to the elapsed milliseconds.
    prefix: &'a [u8],
    /// After them, with the newline.
    suffix: &'a [u8],
}

/// The helper: close what it must not hold, wait for the caller to close
/// its copies (end-of-file on the gate), release the slow descriptors from `closers`
/// processes, report.
fn helper(
    keep_set: &[RawFd],
    slow: &[RawFd],
    gate: RawFd,
    closers: usize,
    report: Option<ReportLine<'_>>,
) -> ! {
    close_all_except(keep_set);
    wait_for_eof(gate);
    let started = monotonic();
    release_in_parallel(slow, closers);
    if let Some(line) = report {
        write_report(line, monotonic().saturating_sub(started));
    }
    // SAFETY: see `intermediate`.
    unsafe { libc::_exit(0) }
}

/// Read `fd` until end-of-file (every write end closed) or an error other
/// than an interruption.
fn wait_for_eof(fd: RawFd) {
    let mut byte = 0u8;
    loop {
        // SAFETY: `byte` is one writable byte; read is async-signal-safe.
        let r = unsafe { libc::read(fd, (&raw mut byte).cast(), 1) };
        if r == 0 || (r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
        {
            break;
        }
    }
}

/// A pipe as `[read, write]`, or `None`.
fn raw_pipe() -> Option<[RawFd; 2]> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is two writable ints; pipe is async-signal-safe.
    (unsafe { libc::pipe(fds.as_mut_ptr()) } == 0).then_some(fds)
}

fn close_fd(fd: RawFd) {
    // SAFETY: closing a descriptor this process owns; close is
    // async-signal-safe.
    unsafe { libc::close(fd) };
}

/// Whether descriptor `index` belongs to closer `closer` (round robin).
fn in_share(index: usize, closer: usize, closers: usize) -> bool {
    index % closers == closer
}

/// Make `closers` processes hold the last references to the slow descriptors, a
/// share each, and close them at once (see the module documentation);
/// returns when every closer has exited. Shares whose closer could not be
/// forked, and everything when the pipes cannot be made, are closed here
/// one by one.
fn release_in_parallel(slow: &[RawFd], closers: usize) {
    let closers = closers.clamp(1, MAX_CLOSERS);
    let pipes = if closers > 1 {
        raw_pipe().zip(raw_pipe())
    } else {
        // One closer would be this process with an extra fork.
        None
    };
    let Some((ready, go)) = pipes else {
        slow.iter().copied().for_each(close_fd);
        return;
    };
    let mut pids = [0 as libc::pid_t; MAX_CLOSERS];
    for (closer, slot) in pids.iter_mut().enumerate().take(closers) {
        // SAFETY: this process is single-threaded; the raw syscall runs no
        // atfork handlers.
        let pid = unsafe { libc::syscall(libc::SYS_fork) };
        if pid == 0 {
            closer_process(slow, closer, closers, ready, go);
        }
        *slot = if pid > 0 { pid as libc::pid_t } else { 0 };
    }
    close_fd(ready[1]);
    close_fd(go[0]);
    // Every closer now holds only its share.
    wait_for_eof(ready[0]);
    close_fd(ready[0]);
    for (i, &fd) in slow.iter().enumerate() {
        let orphaned = (0..closers).any(|c| pids[c] == 0 && in_share(i, c, closers));
        if !orphaned {
            close_fd(fd);
        }
    }
    // Go: the closers drop the last references.
    close_fd(go[1]);
    for (i, &fd) in slow.iter().enumerate() {
        if (0..closers).any(|c| pids[c] == 0 && in_share(i, c, closers)) {
            close_fd(fd);
        }
    }
    for &pid in pids.iter().take(closers).filter(|&&p| p > 0) {
        let mut status = 0;
        // SAFETY: `status` is a writable int; waitpid is async-signal-safe
        // and `pid` is our own child.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
}

/// One closer: drop the descriptors outside its share, signal ready, wait for
/// go, close its share (the last references), exit.
fn closer_process(
    slow: &[RawFd],
    closer: usize,
    closers: usize,
    ready: [RawFd; 2],
    go: [RawFd; 2],
) -> ! {
    close_fd(ready[0]);
    close_fd(go[1]);
    for (i, &fd) in slow.iter().enumerate() {
        if !in_share(i, closer, closers) {
            close_fd(fd);
        }
    }
    close_fd(ready[1]);
    wait_for_eof(go[0]);
    for (i, &fd) in slow.iter().enumerate() {
        if in_share(i, closer, closers) {
            close_fd(fd);
        }
    }
    // SAFETY: see `intermediate`.
    unsafe { libc::_exit(0) }
}

/// Write `prefix`, the elapsed milliseconds with three decimals, `suffix`
/// on stderr without allocating.
fn write_report(line: ReportLine<'_>, elapsed_ns: u64) {
    const LINE: usize = 256;
    let mut out = [0u8; LINE];
    let mut len = 0;
    let mut put = |b: u8, len: &mut usize| {
        if *len < LINE {
            out[*len] = b;
            *len += 1;
        }
    };
    for &b in line.prefix.iter().take(LINE - 64) {
        put(b, &mut len);
    }
    let micros = elapsed_ns / 1_000;
    let mut digits = [0u8; 20];
    let n = write_decimal(&mut digits, micros / 1_000);
    for &b in &digits[..n] {
        put(b, &mut len);
    }
    put(b'.', &mut len);
    let frac = micros % 1_000;
    for d in [frac / 100, frac / 10 % 10, frac % 10] {
        put(b'0' + d as u8, &mut len);
    }
    for &b in line.suffix.iter().take(48) {
        put(b, &mut len);
    }
    // SAFETY: `out[..len]` is initialised memory of this stack frame;
    // write is async-signal-safe. A failed write has no one to tell.
    unsafe { libc::write(libc::STDERR_FILENO, out.as_ptr().cast(), len) };
}

/// `CLOCK_MONOTONIC` in nanoseconds, async-signal-safe.
fn monotonic() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime is
    // async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Writes `v` in decimal at the start of `out`; returns the length.
fn write_decimal(out: &mut [u8], mut v: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let n = n.min(out.len());
    for i in 0..n {
        out[i] = digits[n - 1 - i];
    }
    n
}

/// Close every descriptor not in `keep` (sorted): `close_range` over the
/// gaps, falling back to single closes where the kernel lacks it.
fn close_all_except(keep: &[RawFd]) {
    let mut from: u32 = 0;
    for &fd in keep {
        let fd = fd as u32;
        if fd > from {
            close_range(from, fd - 1);
        }
        from = fd + 1;
    }
    close_range(from, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range takes two integers and flags; closing descriptors
    // this process inherited is the point. It is a plain syscall.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if r != 0 {
        // Kernels before 5.9: close one by one, up to a bound that covers
        // any descriptor a tracing session opens.
        for fd in first..=last.min(first.saturating_add(65_536)) {
            // SAFETY: as above; EBADF for unused numbers is harmless.
            unsafe { libc::close(fd as i32) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    fn pipe() -> (OwnedFd, OwnedFd) {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        (r, w)
    }

    #[test]
    fn the_helper_holds_only_the_kept_descriptors_and_closes_them() {
        // `kept`: the helper holds the write end, so the reader sees EOF
        // only once the helper has closed it. `other`: the helper must
        // close it at once, so dropping ours gives EOF immediately.
        let (kept_r, kept_w) = pipe();
        let (other_r, other_w) = pipe();
        let (done, gate) =
            hand_off(&[kept_w.as_raw_fd()], &HandoffOptions::default()).expect("handoff");
        assert_eq!(done.descriptors, 1);
        drop(other_w);
        drop(kept_w);
        drop(gate);
        let mut buf = Vec::new();
        std::fs::File::from(other_r)
            .read_to_end(&mut buf)
            .expect("EOF: the helper did not keep the other pipe");
        std::fs::File::from(kept_r)
            .read_to_end(&mut buf)
            .expect("EOF once the helper closed the kept pipe and exited");
        assert!(buf.is_empty());
    }

    #[test]
    fn descriptors_are_released_from_parallel_closers_only_after_the_gate() {
        // Six kept descriptors: six closers, each holding the last copy of
        // one. None may close before the gate opens; all close after.
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..6).map(|_| pipe()).collect();
        let kept: Vec<RawFd> = pipes.iter().map(|(_, w)| w.as_raw_fd()).collect();
        let (done, gate) = hand_off(&kept, &HandoffOptions::default()).expect("handoff");
        assert_eq!(done.descriptors, 6);
        let mut readers = Vec::new();
        for (r, w) in pipes {
            drop(w);
            readers.push(std::fs::File::from(r));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        for r in &readers {
            let mut fds = [nix::poll::PollFd::new(
                r.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).expect("poll");
            assert_eq!(ready, 0, "a descriptor was closed before the gate opened");
        }
        drop(gate);
        for mut r in readers {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf)
                .expect("EOF once its closer closed it");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn decimals_are_written_without_allocation() {
        let mut out = [0u8; 20];
        let n = write_decimal(&mut out, 1_234_567);
        assert_eq!(&out[..n], b"1234567");
        let n = write_decimal(&mut out, 0);
        assert_eq!(&out[..n], b"0");
    }
}
