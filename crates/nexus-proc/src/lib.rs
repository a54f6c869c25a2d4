//! Processes as bpfnexus sees them.
//!
//! * [`spawn`]: `-c CMD` — a child forked and held at a gate until every probe
//!   is attached, then released to `execve`; exit status, pidfd, kill.
//! * [`parse`]: pure parsers of `/proc` text (`stat`, `status`, `io`,
//!   `/proc/stat`, `loadavg`, `meminfo`, `diskstats`), tested on fixtures.
//! * [`tree`]: the process tree below a pid, names, thread → thread-group.
//! * [`sample`]: per-process / per-tree samples and system health, as pure
//!   delta computations over snapshots plus thin readers.
//! * [`pidfd`]: a descriptor naming one process, readable when it exits.
//! * [`handoff`]: descriptors whose last close is slow, handed to a
//!   short-lived background process that closes them off the caller's path.
//!
//! Nothing here blocks: reading `/proc` files is a plain, bounded read, and
//! waiting for a child is either non-blocking or driven by its pidfd.
//! (A handoff waits only for its intermediate child, which exits at once.)

pub mod handoff;
pub mod parse;
pub mod pidfd;
pub mod sample;
pub mod spawn;
pub mod tree;

pub use handoff::{Handoff, HandoffError, HandoffGate, HandoffOptions, StderrReport, hand_off};
pub use parse::ParseError;
pub use pidfd::{PidFd, PidfdError};
pub use sample::SampleError;
pub use spawn::{
    ExitStatus, HeldChild, SpawnError, SpawnOptions, resolve_executable, split_command,
};
pub use tree::TreeError;
