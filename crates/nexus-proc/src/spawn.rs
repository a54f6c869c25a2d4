//! The `-c CMD` child: forked first, held at a gate, released to `execve`
//! once every probe is attached.
//!
//! # How the gate works
//!
//! [`HeldChild::spawn`] forks. The child blocks every signal, closes the
//! parent's ends of two channels and waits in `read()` on a socket (the
//! *gate*). The tracer now knows the pid — it can seed the process-tree scope
//! map and `cpid` — while the program image has not run a single instruction.
//! [`HeldChild::release`] writes one byte to the gate; the child resets
//! signal dispositions to default, clears its signal mask and `execv`s the
//! executable that was resolved in `PATH` before the fork. If `execv` fails,
//! the child writes its `errno` into a close-on-exec *error pipe* and exits
//! with 127; `release` reads that pipe, so it returns either "the new image is
//! running" (the pipe closed on exec) or the exact error, naming the command.
//!
//! # Lifetime and signals
//!
//! * If the gate closes without a byte — the `HeldChild` was dropped or the
//!   tracer died, even by SIGKILL — the held child exits with status 127
//!   without running anything. Dropping an unreleased `HeldChild` also sends
//!   SIGKILL and reaps it, so no waiting child is ever left behind.
//! * The child stays in the tracer's process group and session, like
//!   bpftrace's `-c`, so interactive commands keep the terminal. While held it
//!   blocks all signals (so a terminal ^C does not reach it before it exists
//!   as the program); the tracer, which blocks SIGINT/SIGTERM and reads them
//!   through a signalfd, must on interruption either [`HeldChild::kill`] or
//!   simply drop an unreleased child, and kill + [`HeldChild::wait`] a
//!   released one if it should not outlive the tracer.
//! * Before `execv` every signal disposition is reset to `SIG_DFL` (this also
//!   undoes Rust's ignored SIGPIPE and an inherited `nohup` SIGHUP ignore) and
//!   the mask is emptied, whatever the tracer blocked.
//! * A released child is not killed when the tracer exits unless
//!   [`SpawnOptions::parent_death_signal`] is set; stopping it at the end of a
//!   trace (bpftrace 0.17 sends its `-c` command SIGTERM) is the caller's
//!   choice, with [`HeldChild::kill`]. Note that the
//!   kernel sends that signal when the *thread* that called `spawn` exits, so
//!   only set it when spawning from a long-lived thread.
//! * Dropping a released, still-running `HeldChild` neither kills nor reaps it
//!   (like `std::process::Child`).
//!
//! Nothing is allocated between `fork` and `execv`: paths, argv and the
//! `execv` pointer array are built before forking, and the child calls only
//! async-signal-safe functions.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Exit status of a held child that saw its gate close without a release.
pub const GATE_CLOSED_EXIT: i32 = 127;

/// Errors of splitting, resolving, spawning, releasing and waiting.
#[derive(Debug, Error)]
pub enum SpawnError {
    /// The command string or argv is empty.
    #[error("empty command")]
    EmptyCommand,
    /// A quote in the command string is never closed.
    #[error("unterminated {quote} quote in command: {command}")]
    UnterminatedQuote {
        /// `'` or `"`.
        quote: char,
        /// The whole command string.
        command: String,
    },
    /// The command string ends in a lone backslash.
    #[error("trailing backslash in command: {command}")]
    TrailingBackslash {
        /// The whole command string.
        command: String,
    },
    /// An argument contains a NUL byte, which `execve` cannot pass.
    #[error("argument {index} of '{command}' contains a NUL byte")]
    NulInArgument {
        /// The program name.
        command: String,
        /// Position in argv.
        index: usize,
    },
    /// The program could not be run: not found in `PATH`, not executable, or
    /// `execve` itself failed in the child.
    #[error("cannot run '{command}': {}", errno_text(*.errno))]
    Exec {
        /// The program as the user wrote it.
        command: String,
        /// The `errno` of the failure (`ENOENT`, `EACCES`, `ENOEXEC`, …).
        errno: i32,
    },
    /// A system call of the spawn machinery itself failed.
    #[error("cannot start '{command}': {call} failed: {source}")]
    Sys {
        /// The program being started.
        command: String,
        /// The failing call (`fork`, `socketpair`, …).
        call: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The child died while held, before `release` (e.g. someone killed it).
    #[error("'{command}' ended before it was released ({status})")]
    DiedWhileHeld {
        /// The program.
        command: String,
        /// How it ended.
        status: ExitStatus,
    },
    /// `release` was called twice.
    #[error("'{command}' was already released")]
    AlreadyReleased {
        /// The program.
        command: String,
    },
    /// `wait` on a child that was never released would block forever.
    #[error("'{command}' is still held; release or kill it before waiting")]
    NotReleased {
        /// The program.
        command: String,
    },
    /// `waitpid` or `kill` failed.
    #[error("{call} on '{command}' (pid {pid}) failed: {source}")]
    Control {
        /// The program.
        command: String,
        /// Its pid.
        pid: i32,
        /// `waitpid`, `kill`, …
        call: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The text of an errno without std's " (os error N)" suffix, so messages
/// read like a shell's: `cannot run 'foo': No such file or directory`.
fn errno_text(errno: i32) -> String {
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: `buf` is writable for `buf.len()` bytes; the XSI strerror_r
    // (what libc binds on glibc and musl) NUL-terminates on success.
    let rc = unsafe { libc::strerror_r(errno, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return format!("error {errno}");
    }
    // SAFETY: strerror_r returned 0, so `buf` holds a NUL-terminated string.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by a signal.
    Signaled {
        /// The signal number.
        signal: i32,
        /// Whether a core was dumped.
        core_dumped: bool,
    },
}

impl ExitStatus {
    fn from_wait_status(status: libc::c_int) -> ExitStatus {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled {
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            }
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        }
    }

    /// The exit code, if the child exited normally.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(code) => Some(*code),
            ExitStatus::Signaled { .. } => None,
        }
    }

    /// The terminating signal, if any.
    pub fn signal(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(_) => None,
            ExitStatus::Signaled { signal, .. } => Some(*signal),
        }
    }

    /// Exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }

    /// The code a shell would report (`128 + signal` for a signal), for
    /// propagating the child's status as the tracer's own exit code.
    pub fn shell_code(&self) -> i32 {
        match self {
            ExitStatus::Exited(code) => *code,
            ExitStatus::Signaled { signal, .. } => 128 + signal,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by signal {signal}")?;
                if *core_dumped {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// Options of [`HeldChild::spawn`].
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    /// `PR_SET_PDEATHSIG` for the released program (e.g. `libc::SIGTERM`),
    /// so it gets this signal when the spawning thread exits. `None` (the
    /// default, as bpftrace) lets the program outlive the tracer. A *held*
    /// child never outlives the tracer regardless: its gate closes.
    pub parent_death_signal: Option<i32>,
    /// `PATH` to search instead of the environment's (tests, `--path`).
    pub search_path: Option<OsString>,
}

/// Splits a `-c` command string into argv the way a minimal shell would,
/// without running one: words are separated by whitespace; `'…'` is literal;
/// inside `"…"` a backslash escapes `"`, `\`, `$` and `` ` `` (and is kept
/// before anything else); outside quotes a backslash escapes any character.
/// Adjacent quoted and unquoted parts join into one word (`a'b c'` → `ab c`),
/// and `''` is an empty argument. No globbing, variables or redirections.
pub fn split_command(command: &str) -> Result<Vec<String>, SpawnError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has started: distinguishes `''` (an empty word) from
    // plain whitespace.
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => match chars.next() {
                Some(next) => {
                    word.push(next);
                    in_word = true;
                }
                None => {
                    return Err(SpawnError::TrailingBackslash {
                        command: command.to_owned(),
                    });
                }
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => {
                            return Err(SpawnError::UnterminatedQuote {
                                quote: '\'',
                                command: command.to_owned(),
                            });
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => {
                                return Err(SpawnError::UnterminatedQuote {
                                    quote: '"',
                                    command: command.to_owned(),
                                });
                            }
                        },
                        Some(c) => word.push(c),
                        None => {
                            return Err(SpawnError::UnterminatedQuote {
                                quote: '"',
                                command: command.to_owned(),
                            });
                        }
                    }
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(SpawnError::EmptyCommand);
    }
    Ok(words)
}

/// Finds `program` the way `execvp` does: a name containing `/` is used as
/// is; otherwise each `PATH` entry is tried (an empty entry means the current
/// directory; no `PATH` means `/usr/local/bin:/usr/bin:/bin`). The first
/// regular file with an execute bit wins. A match that is not executable
/// yields `EACCES`, no match `ENOENT` — the errors `execvp` would give.
pub fn resolve_executable(
    program: &str,
    search_path: Option<&OsStr>,
) -> Result<PathBuf, SpawnError> {
    let exec_error = |errno| SpawnError::Exec {
        command: program.to_owned(),
        errno,
    };
    if program.is_empty() {
        return Err(exec_error(libc::ENOENT));
    }
    if program.contains('/') {
        // Leave the checks to execv so the error is exactly the kernel's.
        return Ok(PathBuf::from(program));
    }
    let env_path = std::env::var_os("PATH");
    let path = search_path
        .or(env_path.as_deref())
        .unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    let mut saw_unexecutable = false;
    for dir in path.as_bytes().split(|b| *b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(program);
        match std::fs::metadata(&candidate) {
            Ok(meta) if meta.is_file() => {
                if meta.permissions().mode() & 0o111 != 0 {
                    return Ok(candidate);
                }
                saw_unexecutable = true;
            }
            _ => {}
        }
    }
    Err(exec_error(if saw_unexecutable {
        libc::EACCES
    } else {
        libc::ENOENT
    }))
}

/// The kernel's signal count (`_NSIG`); its sigset is `_NSIG / 8` bytes.
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const KERNEL_NSIG: libc::c_long = 64;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const KERNEL_NSIG: libc::c_long = 128;

/// First byte on the error pipe: the child passed the gate.
const RELEASE_ACK: u8 = b'R';

/// See [`HeldChild::spawn`].
static SPAWN_WINDOW: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Held,
    Released,
    Reaped(ExitStatus),
}

/// A forked child held before `execve`. See the module documentation.
#[derive(Debug)]
pub struct HeldChild {
    pid: libc::pid_t,
    command: String,
    state: State,
    /// Parent's end of the gate socket; `None` once released.
    gate: Option<OwnedFd>,
    /// Read end of the close-on-exec error pipe; `None` once released.
    exec_errors: Option<OwnedFd>,
    /// `pidfd_open(pid)`, `None` where the kernel lacks it (< 5.3).
    pidfd: Option<OwnedFd>,
}

fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}

/// A pair of `O_CLOEXEC` fds from a syscall writing two ints.
fn fd_pair(
    call: &'static str,
    command: &str,
    make: impl FnOnce(*mut libc::c_int) -> libc::c_int,
) -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let mut fds = [-1 as libc::c_int; 2];
    if make(fds.as_mut_ptr()) != 0 {
        return Err(SpawnError::Sys {
            command: command.to_owned(),
            call,
            source: last_os_error(),
        });
    }
    // SAFETY: the call succeeded, so both fds are fresh and owned by nobody
    // else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Everything the child needs, built before `fork` so the child allocates
/// nothing.
struct ExecPlan {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
}

impl ExecPlan {
    fn new(argv: &[String], options: &SpawnOptions) -> Result<ExecPlan, SpawnError> {
        let program = argv.first().ok_or(SpawnError::EmptyCommand)?;
        let nul = |index| SpawnError::NulInArgument {
            command: program.clone(),
            index,
        };
        let resolved = resolve_executable(program, options.search_path.as_deref())?;
        let path = CString::new(resolved.into_os_string().into_vec()).map_err(|_| nul(0))?;
        let args = argv
            .iter()
            .enumerate()
            .map(|(i, a)| CString::new(a.as_bytes()).map_err(|_| nul(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        Ok(ExecPlan {
            path,
            _argv: args,
            argv_ptrs,
        })
    }
}

use std::os::unix::ffi::OsStringExt;

/// Runs in the forked child; never returns. Only async-signal-safe calls.
///
/// # Safety
/// Must be called only in the child right after `fork`, with all signals
/// blocked, and with fds that are open in the child.
unsafe fn child_main(
    plan: &ExecPlan,
    gate: RawFd,
    gate_parent: RawFd,
    errors_write: RawFd,
    errors_read: RawFd,
    parent_pid: libc::pid_t,
    parent_death_signal: Option<i32>,
) -> ! {
    // SAFETY: every call below is async-signal-safe, takes plain integers or
    // pointers into memory prepared before fork (still mapped in the child),
    // and the function ends in execv or _exit.
    unsafe {
        // Without closing the parent's gate end here the child would hold it
        // itself and never see EOF when the tracer goes away.
        libc::close(gate_parent);
        libc::close(errors_read);
        let mut byte = 0u8;
        loop {
            let n = libc::read(gate, (&raw mut byte).cast(), 1);
            if n == 1 {
                break;
            }
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            // EOF or error: the tracer dropped us or died; run nothing.
            libc::_exit(GATE_CLOSED_EXIT);
        }
        libc::close(gate);
        // Acknowledge the release, so the parent can tell "execve closed the
        // pipe" from "died while held" (both read as EOF).
        let ack = RELEASE_ACK;
        libc::write(errors_write, (&raw const ack).cast(), 1);
        if let Some(signal) = parent_death_signal {
            libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0);
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent_pid {
                libc::_exit(GATE_CLOSED_EXIT);
            }
        }
        // The raw syscall, because glibc's sigaction refuses its internal
        // signals 32 and 33, which can still be ignored in the tracer. An
        // all-zero kernel `struct sigaction` is SIG_DFL with no flags on
        // every layout; 32 bytes cover the largest one.
        let default = [0u64; 4];
        for signal in 1..=KERNEL_NSIG {
            // SIGKILL/SIGSTOP refuse with EINVAL; harmless.
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                KERNEL_NSIG / 8,
            );
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execv(plan.path.as_ptr(), plan.argv_ptrs.as_ptr());
        let errno = *libc::__errno_location();
        let bytes = errno.to_ne_bytes();
        libc::write(errors_write, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127);
    }
}

impl HeldChild {
    /// Forks `argv` (argv\[0\] is resolved in `PATH`) and holds it before
    /// `execve`. The child inherits stdin/stdout/stderr, the environment and
    /// the working directory.
    ///
    /// Fails before forking when the program cannot be found
    /// ([`SpawnError::Exec`] with `ENOENT`/`EACCES`).
    pub fn spawn(argv: &[String], options: &SpawnOptions) -> Result<HeldChild, SpawnError> {
        let plan = ExecPlan::new(argv, options)?;
        let command = argv[0].clone();
        // A child forked by another thread inherits every fd open at that
        // moment and, being held, may keep it for long. If it kept our
        // child-side ends, our gate would not see EOF and our `release`
        // would wait for that other child's exec. Serialising the window in
        // which those ends are open in the parent rules that out among
        // HeldChild spawns.
        let window = SPAWN_WINDOW
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (gate_parent, gate_child) = fd_pair("socketpair", &command, |fds| {
            // SAFETY: `fds` points at two writable c_ints.
            unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                    0,
                    fds,
                )
            }
        })?;
        let (errors_read, errors_write) = fd_pair("pipe2", &command, |fds| {
            // SAFETY: `fds` points at two writable c_ints.
            unsafe { libc::pipe2(fds, libc::O_CLOEXEC) }
        })?;

        // Block every signal across fork so no handler of the tracer ever runs
        // in the child; the child resets dispositions and mask before execv.
        // SAFETY: sigset_t is plain data; sigfillset initialises it.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above, for the saved mask.
        let mut saved: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live sigset_t values.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
        }
        // SAFETY: getpid has no preconditions.
        let parent_pid = unsafe { libc::getpid() };
        // SAFETY: fork is safe to call; the child branch only runs
        // async-signal-safe code (child_main) and never returns.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: we are the child just after fork with all signals
            // blocked; the fds are inherited and open.
            unsafe {
                child_main(
                    &plan,
                    gate_child.as_raw_fd(),
                    gate_parent.as_raw_fd(),
                    errors_write.as_raw_fd(),
                    errors_read.as_raw_fd(),
                    parent_pid,
                    options.parent_death_signal,
                )
            }
        }
        let fork_error = last_os_error();
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
        if pid < 0 {
            return Err(SpawnError::Sys {
                command,
                call: "fork",
                source: fork_error,
            });
        }
        // Only the child keeps these ends.
        drop(gate_child);
        drop(errors_write);
        drop(window);
        // The pid is an unreaped child of ours, so it cannot be reused
        // before this pidfd refers to it.
        // Any failure (a kernel without pidfd_open) leaves waiting to
        // waitpid alone.
        let pidfd = crate::pidfd::PidFd::open(pid).ok().map(OwnedFd::from);
        Ok(HeldChild {
            pid,
            command,
            state: State::Held,
            gate: Some(gate_parent),
            exec_errors: Some(errors_read),
            pidfd,
        })
    }

    /// The child's pid (also its tgid), valid from `spawn` on.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The program as the user named it (argv\[0\]).
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Whether [`release`](Self::release) has not been called yet.
    pub fn is_held(&self) -> bool {
        self.state == State::Held
    }

    /// A pidfd that becomes readable when the child exits, for an epoll
    /// loop; then call [`try_wait`](Self::try_wait). `None` on kernels
    /// without `pidfd_open` (< 5.3).
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// Lets the child `execve`. Returns once the new program image is in
    /// place (the error pipe closes on exec), or with the exec error naming
    /// the command. Blocks only for the duration of the child's `execve`.
    pub fn release(&mut self) -> Result<(), SpawnError> {
        if self.state != State::Held {
            return Err(SpawnError::AlreadyReleased {
                command: self.command.clone(),
            });
        }
        let gate = self.gate.take();
        let exec_errors = self.exec_errors.take();
        self.state = State::Released;
        let (Some(gate), Some(exec_errors)) = (gate, exec_errors) else {
            return Err(SpawnError::AlreadyReleased {
                command: self.command.clone(),
            });
        };
        let byte = 1u8;
        // MSG_NOSIGNAL: a child that already died must give EPIPE, not a
        // SIGPIPE that would kill the tracer.
        // SAFETY: sends one byte from a live local on an fd we own.
        let sent = unsafe {
            libc::send(
                gate.as_raw_fd(),
                (&raw const byte).cast(),
                1,
                libc::MSG_NOSIGNAL,
            )
        };
        drop(gate);
        if sent != 1 {
            let status = self.wait_blocking()?;
            return Err(SpawnError::DiedWhileHeld {
                command: self.command.clone(),
                status,
            });
        }
        // Expected: the ack, then EOF (exec succeeded) or a 4-byte errno.
        let mut buf = [0u8; 5];
        let mut filled = 0;
        while filled < buf.len() {
            // SAFETY: reads into the unfilled tail of a live local buffer.
            let n = unsafe {
                libc::read(
                    exec_errors.as_raw_fd(),
                    buf[filled..].as_mut_ptr().cast(),
                    buf.len() - filled,
                )
            };
            if n < 0 {
                let err = last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(SpawnError::Control {
                    command: self.command.clone(),
                    pid: self.pid,
                    call: "read(exec error pipe)",
                    source: err,
                });
            }
            if n == 0 {
                break;
            }
            filled += n as usize;
        }
        match filled {
            // Acknowledged, then closed by execve: the program is running.
            1 if buf[0] == RELEASE_ACK => Ok(()),
            5 if buf[0] == RELEASE_ACK => {
                self.wait_blocking()?;
                Err(SpawnError::Exec {
                    command: self.command.clone(),
                    errno: i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]),
                })
            }
            // No ack: it died while held (the byte we sent went unread).
            // A partial errno: killed between a failed execv and its report.
            _ => {
                let status = self.wait_blocking()?;
                Err(SpawnError::DiedWhileHeld {
                    command: self.command.clone(),
                    status,
                })
            }
        }
    }

    fn waitpid(&mut self, flags: libc::c_int) -> Result<Option<ExitStatus>, SpawnError> {
        if let State::Reaped(status) = self.state {
            return Ok(Some(status));
        }
        loop {
            let mut raw = 0;
            // SAFETY: `raw` is a live c_int; pid is our own child.
            let rc = unsafe { libc::waitpid(self.pid, &mut raw, flags) };
            if rc == 0 {
                return Ok(None);
            }
            if rc < 0 {
                let err = last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(SpawnError::Control {
                    command: self.command.clone(),
                    pid: self.pid,
                    call: "waitpid",
                    source: err,
                });
            }
            let status = ExitStatus::from_wait_status(raw);
            self.state = State::Reaped(status);
            return Ok(Some(status));
        }
    }

    fn wait_blocking(&mut self) -> Result<ExitStatus, SpawnError> {
        // waitpid without WNOHANG returns only with a status; the loop just
        // avoids inventing one if it ever did not.
        loop {
            if let Some(status) = self.waitpid(0)? {
                return Ok(status);
            }
        }
    }

    /// Reaps the child if it has exited; never blocks. Once reaped, keeps
    /// returning the same status.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, SpawnError> {
        self.waitpid(libc::WNOHANG)
    }

    /// Blocks until the released child exits and reaps it. Refuses a held
    /// child, which would never exit on its own.
    pub fn wait(&mut self) -> Result<ExitStatus, SpawnError> {
        if self.state == State::Held {
            return Err(SpawnError::NotReleased {
                command: self.command.clone(),
            });
        }
        self.wait_blocking()
    }

    /// Hands the released child to a background thread that waits for it,
    /// so it never lingers as a zombie while this process lives, and the
    /// caller need not wait. The thread ends with the child's status (or
    /// at once with [`SpawnError::NotReleased`] for a held child, which
    /// dropping then kills). A process that exits first leaves the child
    /// to init, which reaps it.
    pub fn reap_in_background(
        mut self,
    ) -> Result<std::thread::JoinHandle<Result<ExitStatus, SpawnError>>, SpawnError> {
        let command = self.command.clone();
        let pid = self.pid;
        std::thread::Builder::new()
            .name(format!("reap {pid}"))
            .spawn(move || self.wait())
            .map_err(|source| SpawnError::Control {
                command,
                pid,
                call: "spawning the reaper thread",
                source,
            })
    }

    /// Sends `signal` to the child (held or released). A no-op once the
    /// child has been reaped or has already exited (its pid may be reused,
    /// which is why the pidfd is used when present).
    pub fn kill(&mut self, signal: i32) -> Result<(), SpawnError> {
        if matches!(self.state, State::Reaped(_)) {
            return Ok(());
        }
        let rc = match &self.pidfd {
            // SAFETY: pidfd_send_signal with a pidfd we own, a signal number,
            // no siginfo and no flags.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            },
            // SAFETY: kill on our own unreaped child, which keeps its pid.
            None => libc::c_long::from(unsafe { libc::kill(self.pid, signal) }),
        };
        if rc != 0 {
            let err = last_os_error();
            // ESRCH: already exited (a zombie awaiting wait).
            if err.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(SpawnError::Control {
                command: self.command.clone(),
                pid: self.pid,
                call: "kill",
                source: err,
            });
        }
        Ok(())
    }
}

impl Drop for HeldChild {
    fn drop(&mut self) {
        if self.state == State::Held {
            // Closing the gate alone would make it exit, but kill + reap makes
            // "no process left" hold by the time drop returns.
            let _ = self.kill(libc::SIGKILL);
            self.gate = None;
            let _ = self.wait_blocking();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_command(s).unwrap()
    }

    #[test]
    fn split_whitespace_and_quotes() {
        assert_eq!(split("ls  -l\t/tmp "), ["ls", "-l", "/tmp"]);
        assert_eq!(split("sh -c 'echo a  b'"), ["sh", "-c", "echo a  b"]);
        assert_eq!(
            split(r#"echo "a \"b\" \\ \x $""#),
            ["echo", r#"a "b" \ \x $"#]
        );
        assert_eq!(split(r"echo a\ b \'"), ["echo", "a b", "'"]);
        assert_eq!(split("echo '' x"), ["echo", "", "x"]);
        assert_eq!(split("echo a'b c'd"), ["echo", "ab cd"]);
        assert_eq!(split("echo 'it\\s'"), ["echo", "it\\s"]);
    }

    #[test]
    fn split_errors() {
        assert!(matches!(
            split_command("   "),
            Err(SpawnError::EmptyCommand)
        ));
        let err = split_command("echo 'abc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unterminated ' quote in command: echo 'abc"
        );
        assert!(matches!(
            split_command("echo \"abc"),
            Err(SpawnError::UnterminatedQuote { quote: '"', .. })
        ));
        assert!(matches!(
            split_command("echo \\"),
            Err(SpawnError::TrailingBackslash { .. })
        ));
    }

    #[test]
    fn exit_status_accessors() {
        let ok = ExitStatus::Exited(0);
        assert!(ok.success());
        assert_eq!(ok.code(), Some(0));
        let killed = ExitStatus::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false,
        };
        assert!(!killed.success());
        assert_eq!(killed.signal(), Some(9));
        assert_eq!(killed.shell_code(), 137);
        assert_eq!(killed.to_string(), "killed by signal 9");
        assert_eq!(ExitStatus::Exited(3).to_string(), "exit code 3");
    }

    #[test]
    fn exec_error_message_reads_like_a_shell() {
        let err = SpawnError::Exec {
            command: "foo".into(),
            errno: libc::ENOENT,
        };
        assert_eq!(
            err.to_string(),
            "cannot run 'foo': No such file or directory"
        );
    }

    #[test]
    fn closing_the_gate_without_release_ends_the_child_unrun() {
        // What happens when the tracer dies: its end of the gate closes.
        let argv = split_command("true").unwrap();
        let mut child = HeldChild::spawn(&argv, &SpawnOptions::default()).unwrap();
        child.gate = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "held child did not exit"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(status, ExitStatus::Exited(GATE_CLOSED_EXIT));
    }

    #[test]
    fn resolve_in_path() {
        let dir = std::env::temp_dir().join(format!("nexus-proc-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("runme");
        let plain = dir.join("plain");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::write(&plain, "").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = OsString::from(format!("/nonexistent:{}", dir.display()));
        assert_eq!(resolve_executable("runme", Some(&path)).unwrap(), exe);
        assert!(matches!(
            resolve_executable("plain", Some(&path)),
            Err(SpawnError::Exec {
                errno: libc::EACCES,
                ..
            })
        ));
        assert!(matches!(
            resolve_executable("missing", Some(&path)),
            Err(SpawnError::Exec {
                errno: libc::ENOENT,
                ..
            })
        ));
        assert_eq!(
            resolve_executable("./x/y", Some(&path)).unwrap(),
            PathBuf::from("./x/y")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
