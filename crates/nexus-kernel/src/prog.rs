//! Program loading (`BPF_PROG_LOAD`): map relocation, BTF attach targets for
//! tracing programs, and the verifier log.

use crate::btf::{self, BtfError};
use crate::map::obj_name;
use crate::sys::{self, BpfAttr, BpfCmd};
use nexus_insn::op::{
    LD_IMM64, PSEUDO_MAP_FD, PSEUDO_MAP_IDX, PSEUDO_MAP_IDX_VALUE, PSEUDO_MAP_VALUE,
};
use nexus_insn::{AttachType, Insn, ProgType};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// First verifier-log buffer when a log is wanted.
const LOG_START: usize = 256 * 1024;
/// The largest log buffer we grow to (the kernel caps `log_size` near 16 MiB).
const LOG_MAX: usize = 16 * 1024 * 1024 - 1;

#[derive(Debug, thiserror::Error)]
pub enum ProgError {
    #[error(
        "program {name:?}: instruction {insn} refers to map index {index}, but only {count} maps were given"
    )]
    MapIndex {
        name: String,
        insn: usize,
        index: i32,
        count: usize,
    },
    #[error("program {name:?}: finding its BTF attach target failed: {source}")]
    Btf {
        name: String,
        #[source]
        source: BtfError,
    },
    #[error("running {prog_type} program {name:?} with BPF_PROG_TEST_RUN failed: {source}")]
    TestRun {
        name: String,
        prog_type: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("program {name:?}: license {license:?} contains a NUL byte")]
    License { name: String, license: String },
    #[error("loading {prog_type} program {name:?} failed: {message} (errno {errno}){}", log_tail(.log))]
    Load {
        name: String,
        prog_type: &'static str,
        errno: i32,
        /// A plain explanation of the errno in this context.
        message: String,
        /// The full verifier log (empty if the kernel wrote none).
        log: String,
    },
}

impl ProgError {
    /// The verifier log, when loading failed in the kernel.
    #[must_use]
    pub fn verifier_log(&self) -> Option<&str> {
        match self {
            ProgError::Load { log, .. } => Some(log),
            _ => None,
        }
    }
    #[must_use]
    pub fn errno(&self) -> Option<i32> {
        match self {
            ProgError::Load { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

fn log_tail(log: &str) -> String {
    match log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with("processed "))
    {
        Some(l) => format!("; verifier: {}", l.trim()),
        None => String::new(),
    }
}

fn explain(errno: i32, prog_type: ProgType, log: &str) -> String {
    match errno {
        libc::EPERM
            if matches!(prog_type, ProgType::Tracing)
                && (log_passed(log) || crate::caps::has_bpf_privileges()) =>
        {
            "the kernel refused the program (EPERM) although this process has the BPF privileges: attaching to kernel functions (fentry/fexit) is locked down on this kernel".into()
        }
        libc::EPERM => "the kernel refused (EPERM): missing CAP_BPF/CAP_PERFMON or CAP_SYS_ADMIN, or this program type is locked down".into(),
        libc::EACCES => "the verifier rejected the program".into(),
        libc::EINVAL => "the kernel rejected the program or its attributes as invalid".into(),
        libc::E2BIG => "the program is too large".into(),
        libc::ENOSPC => "the verifier log did not fit even in the largest buffer".into(),
        libc::ENOENT => "the attach target does not exist".into(),
        libc::ENOTSUP | 524 => "the kernel does not support this program type or attach target".into(),
        _ => io::Error::from_raw_os_error(errno).to_string(),
    }
}

/// True when the log shows the verifier finished (so a failure came later).
fn log_passed(log: &str) -> bool {
    log.lines()
        .any(|l| l.starts_with("processed ") && l.contains(" insns"))
}

/// A program to load.
#[derive(Clone, Debug)]
pub struct ProgramSpec<'a> {
    /// Truncated to 15 bytes for the kernel.
    pub name: &'a str,
    pub prog_type: ProgType,
    pub expected_attach_type: Option<AttachType>,
    /// For tracing programs: the kernel function (`fentry`/`fexit`) or raw
    /// tracepoint (`tp_btf`) whose BTF id becomes `attach_btf_id`.
    pub btf_target: Option<BtfTarget>,
    pub insns: &'a [Insn],
    pub license: &'a str,
    /// Ask for the verifier log even when loading succeeds (`-v`).
    pub keep_log: bool,
}

/// What a tracing program attaches to, resolved through vmlinux BTF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BtfTarget {
    Fentry(String),
    Fexit(String),
    /// A BTF-enabled raw tracepoint, e.g. `sched_switch`.
    TpBtf(String),
}

impl BtfTarget {
    fn attach_type(&self) -> AttachType {
        match self {
            BtfTarget::Fentry(_) => AttachType::TraceFentry,
            BtfTarget::Fexit(_) => AttachType::TraceFexit,
            BtfTarget::TpBtf(_) => AttachType::TraceRawTp,
        }
    }
    fn btf_id(&self) -> Result<u32, BtfError> {
        match self {
            BtfTarget::Fentry(f) | BtfTarget::Fexit(f) => btf::func_id(f),
            BtfTarget::TpBtf(t) => btf::raw_tracepoint_id(t),
        }
    }
}

impl<'a> ProgramSpec<'a> {
    /// A GPL program of `prog_type` with no attach constraints.
    #[must_use]
    pub fn new(name: &'a str, prog_type: ProgType, insns: &'a [Insn]) -> Self {
        ProgramSpec {
            name,
            prog_type,
            expected_attach_type: None,
            btf_target: None,
            insns,
            license: "GPL",
            keep_log: false,
        }
    }

    /// A tracing program (fentry, fexit or tp_btf) for `target`.
    #[must_use]
    pub fn tracing(name: &'a str, target: BtfTarget, insns: &'a [Insn]) -> Self {
        ProgramSpec {
            expected_attach_type: Some(target.attach_type()),
            btf_target: Some(target),
            ..ProgramSpec::new(name, ProgType::Tracing, insns)
        }
    }

    /// Keep the verifier log on success too.
    #[must_use]
    pub fn with_log(mut self, keep: bool) -> Self {
        self.keep_log = keep;
        self
    }
}

/// Rewrite `LD_IMM64` map-index pseudo loads to carry real map fds.
pub fn relocate_maps<M: AsFd>(
    name: &str,
    insns: &[Insn],
    maps: &[M],
) -> Result<Vec<Insn>, ProgError> {
    let mut out = insns.to_vec();
    for (i, insn) in out.iter_mut().enumerate() {
        if insn.code != LD_IMM64 {
            continue;
        }
        let new_src = match insn.src {
            PSEUDO_MAP_IDX => PSEUDO_MAP_FD,
            PSEUDO_MAP_IDX_VALUE => PSEUDO_MAP_VALUE,
            _ => continue,
        };
        let map = usize::try_from(insn.imm).ok().and_then(|idx| maps.get(idx));
        let Some(map) = map else {
            return Err(ProgError::MapIndex {
                name: name.to_string(),
                insn: i,
                index: insn.imm,
                count: maps.len(),
            });
        };
        insn.src = new_src;
        insn.imm = map.as_fd().as_raw_fd();
    }
    Ok(out)
}

/// A loaded program. Dropping it releases the program once no link uses it.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    name: String,
    prog_type: ProgType,
    expected_attach_type: Option<AttachType>,
    log: Option<String>,
}

impl Program {
    /// Relocate map references against `maps` (index = `imm` of
    /// `PSEUDO_MAP_IDX` loads) and `BPF_PROG_LOAD` the program.
    ///
    /// The first attempt runs without a log (fast); if it fails the load is
    /// repeated with `log_level = 1`, growing the buffer on `ENOSPC` up to
    /// 16 MiB, and the error carries the whole log.
    pub fn load<M: AsFd>(spec: &ProgramSpec<'_>, maps: &[M]) -> Result<Program, ProgError> {
        let insns = relocate_maps(spec.name, spec.insns, maps)?;
        let bytes = nexus_insn::encode(&insns);
        let license = CString::new(spec.license).map_err(|_| ProgError::License {
            name: spec.name.to_string(),
            license: spec.license.to_string(),
        })?;
        let btf_id = match &spec.btf_target {
            Some(t) => Some(t.btf_id().map_err(|source| ProgError::Btf {
                name: spec.name.to_string(),
                source,
            })?),
            None => None,
        };
        let expected = spec
            .expected_attach_type
            .or_else(|| spec.btf_target.as_ref().map(BtfTarget::attach_type));
        let attempt = |log: Option<&mut Vec<u8>>| -> io::Result<OwnedFd> {
            let mut attr = BpfAttr::new();
            attr.set_u32(0, spec.prog_type as u32)
                .set_u32(4, insns.len() as u32)
                .set_ptr(8, bytes.as_ptr())
                .set_ptr(16, license.as_ptr())
                .set_bytes(48, &obj_name(spec.name));
            if let Some(buf) = log {
                attr.set_u32(24, 1)
                    .set_u32(28, buf.len() as u32)
                    .set_ptr(32, buf.as_mut_ptr());
            }
            if let Some(t) = expected {
                attr.set_u32(68, t as u32);
            }
            if let Some(id) = btf_id {
                attr.set_u32(108, id);
            }
            sys::bpf_fd(BpfCmd::ProgLoad, &mut attr)
        };
        let make = |fd, log| Program {
            fd,
            name: spec.name.to_string(),
            prog_type: spec.prog_type,
            expected_attach_type: expected,
            log,
        };
        if !spec.keep_log
            && let Ok(fd) = attempt(None)
        {
            return Ok(make(fd, None));
        }
        let mut size = LOG_START;
        loop {
            let mut buf = vec![0u8; size];
            let res = attempt(Some(&mut buf));
            let log = log_text(&buf);
            match res {
                Ok(fd) => return Ok(make(fd, spec.keep_log.then_some(log))),
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && size < LOG_MAX => {
                    size = (size * 4).min(LOG_MAX);
                }
                Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(libc::EIO);
                    return Err(ProgError::Load {
                        name: spec.name.to_string(),
                        prog_type: spec.prog_type.name(),
                        errno,
                        message: explain(errno, spec.prog_type, &log),
                        log,
                    });
                }
            }
        }
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
    #[must_use]
    pub fn prog_type(&self) -> ProgType {
        self.prog_type
    }
    #[must_use]
    pub fn expected_attach_type(&self) -> Option<AttachType> {
        self.expected_attach_type
    }
    /// The verifier log, when the spec asked to keep it.
    #[must_use]
    pub fn verifier_log(&self) -> Option<&str> {
        self.log.as_deref()
    }

    /// Run the program once in the kernel (`BPF_PROG_TEST_RUN`) with
    /// `ctx` as its context, returning its `r0`. This is how BEGIN/END
    /// programs (raw tracepoint programs with no attach point) run; `ctx`
    /// may be empty for them. On `cpu`, when given, with
    /// `BPF_F_TEST_RUN_ON_CPU` (raw tracepoint programs only).
    pub fn test_run(&self, ctx: &[u8], cpu: Option<u32>) -> Result<u32, ProgError> {
        let mut attr = BpfAttr::new();
        attr.set_u32(0, self.fd.as_raw_fd() as u32);
        if !ctx.is_empty() {
            attr.set_u32(40, ctx.len() as u32).set_ptr(48, ctx.as_ptr());
        }
        if let Some(cpu) = cpu {
            // BPF_F_TEST_RUN_ON_CPU
            attr.set_u32(64, 1).set_u32(68, cpu);
        }
        match sys::bpf(BpfCmd::ProgTestRun, &mut attr) {
            Ok(_) => Ok(attr.u32_at(4)),
            Err(e) => Err(ProgError::TestRun {
                name: self.name.clone(),
                prog_type: self.prog_type.name(),
                source: e,
            }),
        }
    }

    /// The kernel's id for this program (`BPF_OBJ_GET_INFO_BY_FD`).
    pub fn id(&self) -> io::Result<u32> {
        // `struct bpf_prog_info` starts with `__u32 type; __u32 id;`; the
        // kernel fills only as many bytes as `info_len` says.
        let mut info = [0u8; 8];
        let mut attr = BpfAttr::new();
        attr.set_u32(0, self.fd.as_raw_fd() as u32)
            .set_u32(4, info.len() as u32)
            .set_ptr(8, info.as_mut_ptr());
        sys::bpf(BpfCmd::ObjGetInfoByFd, &mut attr)?;
        Ok(u32::from_ne_bytes([info[4], info[5], info[6], info[7]]))
    }
}

fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Program {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Ids of every program loaded in the system (`BPF_PROG_GET_NEXT_ID`).
pub fn loaded_program_ids() -> io::Result<Vec<u32>> {
    let mut ids = Vec::new();
    let mut start = 0u32;
    loop {
        let mut attr = BpfAttr::new();
        attr.set_u32(0, start);
        match sys::bpf(BpfCmd::ProgGetNextId, &mut attr) {
            Ok(_) => {
                start = attr.u32_at(4);
                ids.push(start);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(ids),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_insn::Reg;
    use std::os::fd::{BorrowedFd, OwnedFd};

    #[test]
    fn relocates_map_index_loads() {
        // SAFETY: fds 0 and 1 are only used as numbers here, never accessed.
        let maps = unsafe { [BorrowedFd::borrow_raw(40), BorrowedFd::borrow_raw(41)] };
        let mut prog = Vec::new();
        prog.extend(Insn::ld_imm64_pseudo(Reg::R1, PSEUDO_MAP_IDX, 1, 0));
        prog.extend(Insn::ld_imm64_pseudo(Reg::R2, PSEUDO_MAP_IDX_VALUE, 0, 16));
        prog.extend(Insn::ld_imm64(Reg::R3, 5));
        let out = relocate_maps("p", &prog, &maps).unwrap();
        assert_eq!((out[0].src, out[0].imm), (PSEUDO_MAP_FD, 41));
        assert_eq!(
            (out[2].src, out[2].imm, out[3].imm),
            (PSEUDO_MAP_VALUE, 40, 16)
        );
        assert_eq!(out[4], prog[4]);
        let bad = Insn::ld_imm64_pseudo(Reg::R1, PSEUDO_MAP_IDX, 2, 0);
        assert!(matches!(
            relocate_maps("p", &bad, &maps),
            Err(ProgError::MapIndex {
                index: 2,
                count: 2,
                ..
            })
        ));
    }

    /// Fails every load: without a log with EACCES, with a log smaller
    /// than 4 MiB with ENOSPC, otherwise writes a log and fails with EACCES.
    #[derive(Default)]
    struct GrowingLogKernel {
        log_sizes: std::cell::RefCell<Vec<u32>>,
    }

    impl sys::Sys for GrowingLogKernel {
        fn bpf(&self, cmd: BpfCmd, attr: &mut BpfAttr) -> io::Result<i64> {
            assert_eq!(cmd, BpfCmd::ProgLoad);
            let (level, size, buf) = (attr.u32_at(24), attr.u32_at(28), attr.u64_at(32));
            self.log_sizes.borrow_mut().push(size);
            if level == 0 {
                return Err(io::Error::from_raw_os_error(libc::EACCES));
            }
            if size < 4 << 20 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let text = b"0: (95) exit\nR0 !read_ok\n\0";
            // SAFETY: `buf` is the live log buffer Program::load allocated,
            // `size` (at least 4 MiB) bytes long.
            unsafe {
                std::ptr::copy_nonoverlapping(text.as_ptr(), buf as usize as *mut u8, text.len())
            };
            Err(io::Error::from_raw_os_error(libc::EACCES))
        }
        fn perf_event_open(
            &self,
            _: &sys::PerfEventAttr,
            _: i32,
            _: i32,
            _: u64,
        ) -> io::Result<OwnedFd> {
            unreachable!("program loading opens no perf events")
        }
        fn ioctl(&self, _: BorrowedFd<'_>, _: u64, _: u64) -> io::Result<i32> {
            unreachable!("program loading makes no ioctl")
        }
        fn mmap_shared(&self, _: BorrowedFd<'_>, _: usize, _: i32, _: i64) -> io::Result<*mut u8> {
            unreachable!("program loading maps nothing")
        }
        fn munmap(&self, _: *mut u8, _: usize) -> io::Result<()> {
            unreachable!("program loading maps nothing")
        }
    }

    #[test]
    fn verifier_log_buffer_grows_on_enospc() {
        let kernel = std::rc::Rc::new(GrowingLogKernel::default());
        let _guard = sys::override_for_thread(kernel.clone());
        let insns = [Insn::exit()];
        let err = Program::load(
            &ProgramSpec::new("p", ProgType::Kprobe, &insns),
            &[] as &[OwnedFd],
        )
        .unwrap_err();
        assert_eq!(err.errno(), Some(libc::EACCES));
        assert_eq!(err.verifier_log(), Some("0: (95) exit\nR0 !read_ok\n"));
        assert_eq!(
            *kernel.log_sizes.borrow(),
            vec![0, 256 << 10, 1 << 20, 4 << 20]
        );
    }

    #[test]
    fn error_message_names_verifier_line() {
        let e = ProgError::Load {
            name: "p".into(),
            prog_type: "kprobe",
            errno: libc::EACCES,
            message: explain(libc::EACCES, ProgType::Kprobe, ""),
            log: "0: (95) exit\nR0 !read_ok\nprocessed 1 insns\n".into(),
        };
        let s = e.to_string();
        assert!(s.contains("verifier rejected"), "{s}");
        assert!(s.contains("R0 !read_ok"), "{s}");
    }
}
