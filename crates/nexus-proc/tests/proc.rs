//! Integration tests against the live kernel: the held child, the process
//! tree and samples of real processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nexus_proc::spawn::{ExitStatus, HeldChild, SpawnError, SpawnOptions, split_command};
use nexus_proc::{sample, tree};

fn argv(cmd: &str) -> Vec<String> {
    split_command(cmd).unwrap()
}

fn spawn(cmd: &str) -> HeldChild {
    HeldChild::spawn(&argv(cmd), &SpawnOptions::default()).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nexus-proc-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Polls `cond` for up to 5 s.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn poll_readable(fd: std::os::fd::BorrowedFd<'_>, timeout_ms: i32) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    n == 1 && pfd.revents & libc::POLLIN != 0
}

#[test]
fn held_child_runs_nothing_before_release() {
    let file = scratch("ran");
    let mut child = spawn(&format!("sh -c 'echo ran > {}'", file.display()));
    assert!(child.is_held());
    assert!(child.pid() > 0);
    assert!(tree::pid_exists(child.pid()));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!file.exists(), "the command ran before release");
    // Still the forked copy of this test binary, not `sh`.
    assert_ne!(tree::process_name(child.pid()).unwrap(), "sh");
    child.release().unwrap();
    assert!(!child.is_held());
    assert_eq!(child.wait().unwrap(), ExitStatus::Exited(0));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "ran\n");
}

#[test]
fn exit_code_and_signal_propagate() {
    let mut child = spawn("sh -c 'exit 7'");
    child.release().unwrap();
    assert_eq!(child.wait().unwrap(), ExitStatus::Exited(7));
    // A reaped child keeps reporting its status; kill is then a no-op.
    assert_eq!(child.try_wait().unwrap(), Some(ExitStatus::Exited(7)));
    child.kill(libc::SIGKILL).unwrap();

    let mut child = spawn("sleep 10");
    child.release().unwrap();
    assert_eq!(child.try_wait().unwrap(), None);
    child.kill(libc::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    assert_eq!(status.shell_code(), 128 + libc::SIGTERM);
}

#[test]
fn command_not_found_is_reported_before_fork() {
    let err = HeldChild::spawn(
        &argv("nexus-proc-no-such-command -x"),
        &SpawnOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot run 'nexus-proc-no-such-command': No such file or directory"
    );
}

#[test]
fn exec_failure_in_child_comes_back_with_errno() {
    // Paths with a slash are left to execve, so the error comes through the
    // error pipe at release.
    let mut child = spawn("/nonexistent/nexus-proc/prog arg");
    let err = child.release().unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot run '/nonexistent/nexus-proc/prog': No such file or directory"
    );
    assert_eq!(child.try_wait().unwrap(), Some(ExitStatus::Exited(127)));

    let plain = scratch("not-executable");
    std::fs::write(&plain, "data").unwrap();
    let mut child = spawn(&plain.display().to_string());
    match child.release() {
        Err(SpawnError::Exec { errno, command }) => {
            assert_eq!(errno, libc::EACCES);
            assert_eq!(command, plain.display().to_string());
        }
        other => panic!("expected EACCES, got {other:?}"),
    }
}

#[test]
fn dropping_an_unreleased_child_leaves_no_process() {
    let file = scratch("never");
    let child = spawn(&format!("sh -c 'echo ran > {}'", file.display()));
    let pid = child.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(child);
    // Reaped by drop: the pid is gone entirely (not even a zombie).
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(!file.exists());
}

#[test]
fn held_child_killed_before_release() {
    let mut child = spawn("true");
    child.kill(libc::SIGKILL).unwrap();
    match child.release() {
        Err(SpawnError::DiedWhileHeld { status, .. }) => {
            assert_eq!(status.signal(), Some(libc::SIGKILL));
        }
        other => panic!("expected DiedWhileHeld, got {other:?}"),
    }
    assert!(matches!(
        child.release(),
        Err(SpawnError::AlreadyReleased { .. })
    ));
}

#[test]
fn wait_refuses_a_held_child() {
    let mut child = spawn("true");
    assert!(matches!(child.wait(), Err(SpawnError::NotReleased { .. })));
    assert_eq!(child.try_wait().unwrap(), None);
}

#[test]
fn pidfd_becomes_readable_on_exit() {
    let mut child = spawn("sleep 0.2");
    let held_readable = poll_readable(child.pidfd().unwrap(), 100);
    assert!(!held_readable, "pidfd readable while the child is held");
    child.release().unwrap();
    assert!(poll_readable(child.pidfd().unwrap(), 5000));
    assert_eq!(child.try_wait().unwrap(), Some(ExitStatus::Exited(0)));
}

#[test]
fn a_child_reaped_in_background_leaves_no_zombie() {
    let mut child = spawn("sh -c 'exit 3'");
    let pid = child.pid();
    child.release().unwrap();
    let reaper = child.reap_in_background().unwrap();
    assert_eq!(reaper.join().unwrap().unwrap(), ExitStatus::Exited(3));
    // Reaped: the pid is gone entirely, not left as a zombie.
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn released_program_has_default_signals_and_empty_mask() {
    // Run the spawn on a thread that blocks SIGINT/SIGTERM, as the runtime's
    // event loop does (it reads them through a signalfd).
    let handle = std::thread::spawn(|| {
        // SAFETY: builds a sigset and blocks it for this thread only.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let mut child = spawn("sleep 5");
        child.release().unwrap();
        let path = format!("/proc/{}/status", child.pid());
        let status = std::fs::read_to_string(&path).unwrap();
        child.kill(libc::SIGKILL).unwrap();
        child.wait().unwrap();
        status
    });
    let status = handle.join().unwrap();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap()
            .to_owned()
    };
    assert_eq!(field("Name:"), "sleep");
    assert_eq!(field("SigBlk:"), "0000000000000000");
    // The test harness ignores SIGPIPE; the program must not inherit that.
    assert_eq!(field("SigIgn:"), "0000000000000000");
}

#[test]
fn descendants_include_a_grandchild() {
    let mut child = spawn("sh -c 'sh -c \"sleep 3 & wait\" & wait'");
    let pid = child.pid();
    child.release().unwrap();
    let mut found = Vec::new();
    let ok = eventually(|| {
        found = tree::descendants(pid).unwrap_or_default();
        found
            .iter()
            .any(|p| tree::process_name(*p).is_ok_and(|n| n == "sleep"))
    });
    assert!(ok, "no sleep among descendants of {pid}: {found:?}");
    // sh → sh → sleep: two levels below the child.
    assert!(found.len() >= 2, "{found:?}");
    // The same tree seen from the test process includes the child itself.
    let me = std::process::id() as i32;
    let from_me = tree::descendants(me).unwrap();
    assert!(from_me.contains(&pid));
    assert!(found.iter().all(|p| from_me.contains(p)));
    // The scan fallback agrees.
    let scanned = tree::descendants_from_links(pid, &tree::all_parent_links().unwrap());
    for p in &found {
        assert!(scanned.contains(p) || !tree::pid_exists(*p));
    }
    let sample = sample::sample_tree(pid).unwrap();
    assert_eq!(sample.root, pid);
    assert!(sample.processes.len() >= 3);
    assert!(sample.total.rss_kib >= sample.processes[0].usage.rss_kib);
    child.kill(libc::SIGKILL).unwrap();
    child.wait().unwrap();
}

#[test]
fn parent_death_signal_option_is_applied() {
    let mut child = HeldChild::spawn(
        &argv("sleep 5"),
        &SpawnOptions {
            parent_death_signal: Some(libc::SIGTERM),
            ..SpawnOptions::default()
        },
    )
    .unwrap();
    child.release().unwrap();
    assert_eq!(tree::process_name(child.pid()).unwrap(), "sleep");
    child.kill(libc::SIGKILL).unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}
