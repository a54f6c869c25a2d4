//! Processes as bpfnexus sees them.
//!
//! * [`spawn`]: `-c CMD` — a child forked and held at a gate until every probe
//!   is attached, then released to `execve`; exit status, pidfd, kill.
//! * [`parse`]: pure parsers of `/proc` text (`stat`, `status`, `io`,
//!   `/proc/stat`, `loadavg`, `meminfo`, `diskstats`), tested on fixtures.
//! * [`tree`]: the process tree below a pid, names, thread → thread-group.
//! * [`sample`]: per-process / per-tree samples and system health, as pure
//!   delta computations over snapshots plus thin readers.
//!
//! Nothing here blocks: reading `/proc` files is a plain, bounded read, and
//! waiting for a child is either non-blocking or driven by its pidfd.

pub mod parse;
pub mod sample;
pub mod spawn;
pub mod tree;

pub use parse::ParseError;
pub use sample::SampleError;
pub use spawn::{
    ExitStatus, HeldChild, SpawnError, SpawnOptions, resolve_executable, split_command,
};
pub use tree::TreeError;
