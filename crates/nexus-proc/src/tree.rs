//! The process tree from `/proc`: descendants of a pid, existence, names,
//! thread → thread group.
//!
//! Processes come and go while we read; a process that vanishes between
//! listing and reading is skipped, never an error, except for the pid the
//! caller asked about.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::parse::{self, ParseError};

/// Failures reading the process tree.
#[derive(Debug, Error)]
pub enum TreeError {
    /// The process does not exist (any more).
    #[error("no process {pid}")]
    NoSuchProcess {
        /// The pid asked about.
        pid: i32,
    },
    /// A `/proc` file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A `/proc` file did not parse.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: ParseError,
    },
}

/// Where procfs is mounted. Kept as a value so tests could point at a copy.
const PROC: &str = "/proc";

/// Reads a small `/proc` file; a missing process becomes
/// [`TreeError::NoSuchProcess`].
pub(crate) fn read_proc_file(pid: i32, path: &Path) -> Result<String, TreeError> {
    std::fs::read_to_string(path).map_err(|source| {
        // ENOENT: gone; ESRCH: reading a file of a process that just exited.
        if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH) {
            TreeError::NoSuchProcess { pid }
        } else {
            TreeError::Read {
                path: path.to_owned(),
                source,
            }
        }
    })
}

fn pid_file(pid: i32, name: &str) -> PathBuf {
    Path::new(PROC).join(pid.to_string()).join(name)
}

/// Reads and parses `/proc/PID/stat`.
pub fn read_pid_stat(pid: i32) -> Result<parse::PidStat, TreeError> {
    let path = pid_file(pid, "stat");
    let text = read_proc_file(pid, &path)?;
    parse::parse_pid_stat(&text).map_err(|source| TreeError::Parse { path, source })
}

/// Reads and parses `/proc/PID/status` (also valid for a thread id).
pub fn read_pid_status(pid: i32) -> Result<parse::PidStatus, TreeError> {
    let path = pid_file(pid, "status");
    let text = read_proc_file(pid, &path)?;
    parse::parse_pid_status(&text).map_err(|source| TreeError::Parse { path, source })
}

/// Whether a process (or thread) with this id exists, zombies included.
/// Uses `kill(pid, 0)`: `EPERM` still means it exists.
pub fn pid_exists(pid: i32) -> bool {
    if pid <= 0 {
        // kill() would address process groups or everything.
        return false;
    }
    // SAFETY: signal 0 only checks existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The command name (`comm`, at most 15 bytes) of a process or thread.
pub fn process_name(pid: i32) -> Result<String, TreeError> {
    let path = pid_file(pid, "comm");
    let text = read_proc_file(pid, &path)?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

/// The thread-group id (process id) of a thread id. `/proc/TID` is readable
/// for any thread even though `/proc` does not list it.
pub fn tgid_of(tid: i32) -> Result<i32, TreeError> {
    Ok(read_pid_status(tid)?.tgid)
}

/// Children of `pid` from `/proc/PID/task/*/children` (a child is listed
/// under the thread that forked it, so every thread is read). `None` when
/// the kernel lacks `CONFIG_PROC_CHILDREN`.
fn children_via_task_files(pid: i32) -> Result<Option<Vec<i32>>, TreeError> {
    let task_dir = pid_file(pid, "task");
    let entries = match std::fs::read_dir(&task_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(TreeError::NoSuchProcess { pid });
        }
        Err(source) => {
            return Err(TreeError::Read {
                path: task_dir,
                source,
            });
        }
    };
    let mut children = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join("children");
        match std::fs::read_to_string(&path) {
            Ok(text) => children.extend(
                parse::parse_children(&text).map_err(|source| TreeError::Parse { path, source })?,
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Either the thread just exited, or the file does not exist
                // at all on this kernel.
                if !entry.path().exists() {
                    continue;
                }
                return Ok(None);
            }
            // The thread exited while we read.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue,
            Err(source) => return Err(TreeError::Read { path, source }),
        }
    }
    Ok(Some(children))
}

/// `(pid, ppid)` of every process, by scanning `/proc/*/stat`.
pub fn all_parent_links() -> Result<Vec<(i32, i32)>, TreeError> {
    let entries = std::fs::read_dir(PROC).map_err(|source| TreeError::Read {
        path: PathBuf::from(PROC),
        source,
    })?;
    let mut links = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        match read_pid_stat(pid) {
            Ok(stat) => links.push((stat.pid, stat.ppid)),
            Err(TreeError::NoSuchProcess { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(links)
}

/// Pure: every descendant of `root` given `(pid, ppid)` links, breadth
/// first, `root` excluded. Robust to cycles (pid reuse during a scan).
pub fn descendants_from_links(root: i32, links: &[(i32, i32)]) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for &(pid, ppid) in links {
        children.entry(ppid).or_default().push(pid);
    }
    let mut seen = HashSet::from([root]);
    let mut queue = VecDeque::from([root]);
    let mut out = Vec::new();
    while let Some(pid) = queue.pop_front() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(child) {
                out.push(child);
                queue.push_back(child);
            }
        }
    }
    out
}

/// Every live descendant process of `pid` (children, grandchildren, …),
/// breadth first, `pid` excluded. Uses the `children` files when the kernel
/// has them (cheap: touches only the subtree) and falls back to a scan of
/// every `/proc/*/stat`. Reparented orphans (e.g. daemonised grandchildren
/// whose parent exited) are no longer descendants — trace fork events to
/// keep them in scope.
pub fn descendants(pid: i32) -> Result<Vec<i32>, TreeError> {
    let Some(first) = children_via_task_files(pid)? else {
        return Ok(descendants_from_links(pid, &all_parent_links()?));
    };
    let mut seen = HashSet::from([pid]);
    let mut out = Vec::new();
    let mut queue: VecDeque<i32> = VecDeque::new();
    for child in first {
        if seen.insert(child) {
            out.push(child);
            queue.push_back(child);
        }
    }
    while let Some(parent) = queue.pop_front() {
        let children = match children_via_task_files(parent) {
            Ok(Some(children)) => children,
            Ok(None) | Err(TreeError::NoSuchProcess { .. }) => continue,
            Err(e) => return Err(e),
        };
        for child in children {
            if seen.insert(child) {
                out.push(child);
                queue.push_back(child);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_from_links_walks_the_tree() {
        // 1 ─ 10 ─ 11 ─ 12
        //   └ 20     └ 13
        let links = [(10, 1), (11, 10), (12, 11), (13, 11), (20, 1), (30, 2)];
        assert_eq!(descendants_from_links(10, &links), vec![11, 12, 13]);
        assert_eq!(descendants_from_links(1, &links), vec![10, 20, 11, 12, 13]);
        assert_eq!(descendants_from_links(12, &links), Vec::<i32>::new());
        // A cycle from pid reuse must not loop forever.
        assert_eq!(descendants_from_links(5, &[(6, 5), (5, 6)]), vec![6]);
    }

    #[test]
    fn self_is_known() {
        let me = std::process::id() as i32;
        assert!(pid_exists(me));
        assert!(!pid_exists(0));
        assert!(!pid_exists(-1));
        assert_eq!(tgid_of(me).unwrap(), me);
        assert!(!process_name(me).unwrap().is_empty());
        assert!(matches!(
            process_name(i32::MAX),
            Err(TreeError::NoSuchProcess { pid: i32::MAX })
        ));
    }

    #[test]
    fn thread_maps_to_its_process() {
        let me = std::process::id() as i32;
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() }).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
        });
        let tid = rx.recv().unwrap();
        assert_ne!(tid, me);
        assert_eq!(tgid_of(tid).unwrap(), me);
        handle.join().unwrap();
    }
}
