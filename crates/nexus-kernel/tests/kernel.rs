//! nexus-kernel against the real kernel.
//!
//! Each test first asks [`kernel`] whether BPF works here. When it does not,
//! the test says why on stderr and returns — unless `BPFNEXUS_REQUIRE_KERNEL=1`,
//! in which case a skip is a failure. Tests run in parallel threads, so every
//! program filters on the triggering thread's id or uses maps of its own.

use nexus_insn::op::PSEUDO_MAP_IDX;
use nexus_insn::{AluOp, AtomicOp, Helper, Insn, JmpCond, MapType, ProgType, Reg, Size, Src};
use nexus_kernel::sys::{self, BpfAttr, BpfCmd, PerfEventAttr, RealSys, Sys};
use nexus_kernel::{
    AttachError, AttachTarget, BtfTarget, KprobeTarget, Link, Map, MapSpec, PerfEventTarget,
    Program, ProgramSpec, RingBuf, UpdateFlags, UprobeTarget, attach, loaded_program_ids, tracefs,
};
use std::collections::HashMap;
use std::io::BufRead;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- skipping

/// `Err(why)` when BPF cannot be used here.
fn kernel() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            Map::create(&MapSpec::new("nx_t_probe", MapType::Array, 4, 4, 1))
                .map(drop)
                .map_err(|e| format!("bpf(2) unusable: {e}"))
        })
        .clone()
}

/// Skip (or, with `BPFNEXUS_REQUIRE_KERNEL=1`, fail) when `why` is set.
fn skip(test: &str, why: &str) {
    if std::env::var("BPFNEXUS_REQUIRE_KERNEL").as_deref() == Ok("1") {
        panic!("{test}: required kernel capability missing: {why}");
    }
    eprintln!("SKIP {test}: {why}");
}

macro_rules! require_kernel {
    ($test:expr) => {
        if let Err(why) = kernel() {
            skip($test, &why);
            return;
        }
    };
}

// ---------------------------------------------------------------- helpers

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

/// A tiny assembler with labels, so test programs read top to bottom.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: HashMap<&'static str, usize>,
    fixups: Vec<(usize, &'static str)>,
}

impl Asm {
    fn i(&mut self, insn: Insn) -> &mut Self {
        self.insns.push(insn);
        self
    }
    fn wide(&mut self, pair: [Insn; 2]) -> &mut Self {
        self.insns.extend(pair);
        self
    }
    fn jmp(&mut self, cond: JmpCond, dst: Reg, src: Src, label: &'static str) -> &mut Self {
        self.fixups.push((self.insns.len(), label));
        self.i(Insn::jmp(cond, dst, src, 0))
    }
    fn goto(&mut self, label: &'static str) -> &mut Self {
        self.fixups.push((self.insns.len(), label));
        self.i(Insn::ja(0))
    }
    fn label(&mut self, name: &'static str) -> &mut Self {
        self.labels.insert(name, self.insns.len());
        self
    }
    fn map(&mut self, dst: Reg, index: i32) -> &mut Self {
        self.wide(Insn::ld_imm64_pseudo(dst, PSEUDO_MAP_IDX, index, 0))
    }
    fn call(&mut self, h: Helper) -> &mut Self {
        self.i(Insn::call_helper(h))
    }
    /// `if (u32)pid_tgid != tid goto out` with r7 = tgid afterwards; clobbers r0-r5.
    fn only_thread(&mut self, tid: u32) -> &mut Self {
        self.call(Helper::GetCurrentPidTgid)
            .i(Insn::alu32(AluOp::Mov, Reg::R1, Src::Reg(Reg::R0)))
            .jmp(JmpCond::Ne, Reg::R1, Src::Imm(tid as i32), "out")
            .i(Insn::mov64(Reg::R7, Reg::R0))
            .i(Insn::alu64(AluOp::Rsh, Reg::R7, Src::Imm(32)))
    }
    /// r8 = ringbuf_reserve(map 0, size) or goto out.
    fn reserve(&mut self, size: i32) -> &mut Self {
        self.map(Reg::R1, 0)
            .i(Insn::mov64_imm(Reg::R2, size))
            .i(Insn::mov64_imm(Reg::R3, 0))
            .call(Helper::RingbufReserve)
            .jmp(JmpCond::Eq, Reg::R0, Src::Imm(0), "out")
            .i(Insn::mov64(Reg::R8, Reg::R0))
    }
    fn submit(&mut self) -> &mut Self {
        self.i(Insn::mov64(Reg::R1, Reg::R8))
            .i(Insn::mov64_imm(Reg::R2, 0))
            .call(Helper::RingbufSubmit)
    }
    /// Atomically add 1 to the u64 at key 0 of array map 0.
    fn count(&mut self) -> &mut Self {
        self.i(Insn::st(Size::W, Reg::FP, -4, 0))
            .map(Reg::R1, 0)
            .i(Insn::mov64(Reg::R2, Reg::FP))
            .i(Insn::alu64(AluOp::Add, Reg::R2, Src::Imm(-4)))
            .call(Helper::MapLookupElem)
            .jmp(JmpCond::Eq, Reg::R0, Src::Imm(0), "out")
            .i(Insn::mov64_imm(Reg::R1, 1))
            .i(Insn::atomic(
                Size::DW,
                AtomicOp::Add { fetch: false },
                Reg::R0,
                0,
                Reg::R1,
            ))
    }
    fn finish(&mut self) -> Vec<Insn> {
        self.label("out")
            .i(Insn::mov64_imm(Reg::R0, 0))
            .i(Insn::exit());
        let mut out = self.insns.clone();
        for &(at, label) in &self.fixups {
            let target = self.labels[label];
            out[at].off = (target as i64 - at as i64 - 1) as i16;
        }
        out
    }
}

fn ringbuf_map(name: &str) -> Map {
    Map::create(&MapSpec::ringbuf(name, 64 * 1024)).expect("create ring buffer")
}

fn counter_map(name: &str) -> Map {
    Map::create(&MapSpec::new(name, MapType::Array, 4, 8, 1)).expect("create counter array")
}

fn counter(map: &Map) -> u64 {
    u64_at(&map.lookup(&0u32.to_ne_bytes()).unwrap().unwrap(), 0)
}

/// Wait (polling the ring buffer fd) until `n` records arrived or 3 s passed.
fn wait_records(rb: &mut RingBuf, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.len() < n && Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: rb.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        rb.drain(|r| got.push(r.to_vec()));
    }
    got
}

/// Pin the calling thread (a test thread of its own) to `cpu`.
fn pin_to_cpu(cpu: u32) {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t and `cpu` is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    // SAFETY: pid 0 is the calling thread; the set is valid for the call.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(r, 0, "sched_setaffinity to CPU {cpu}");
}

fn getppid_syscall() {
    // SAFETY: getppid has no arguments and no side effects.
    unsafe { libc::syscall(libc::SYS_getppid) };
}

/// Load `insns` as program `name` of type `ty` with `maps` bound to map indexes.
fn load(name: &str, ty: ProgType, insns: &[Insn], maps: &[&Map]) -> Program {
    Program::load(&ProgramSpec::new(name, ty, insns), maps).unwrap()
}

fn tracepoint(category: &str, name: &str) -> AttachTarget {
    AttachTarget::Tracepoint {
        category: category.into(),
        name: name.into(),
    }
}

fn raw_tracepoint(name: &str) -> AttachTarget {
    AttachTarget::RawTracepoint { name: name.into() }
}

// ---------------------------------------------------------------- maps

fn check_keyed_map(map_type: MapType) {
    let m = Map::create(&MapSpec::new("nx_t_keyed", map_type, 4, 8, 16)).unwrap();
    let k = |i: u32| i.to_ne_bytes();
    let v = |i: u64| i.to_ne_bytes();
    let slot = |raw: Vec<u8>| u64_at(m.percpu_slots(&raw)[0], 0);
    assert!(m.lookup(&k(1)).unwrap().is_none());
    m.update(&k(1), &v(10), UpdateFlags::NoExist).unwrap();
    let e = m.update(&k(1), &v(11), UpdateFlags::NoExist).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
    let e = m.update(&k(2), &v(20), UpdateFlags::Exist).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOENT), "{e}");
    m.update(&k(1), &v(12), UpdateFlags::Exist).unwrap();
    m.update(&k(2), &v(20), UpdateFlags::Any).unwrap();
    m.update(&k(3), &v(30), UpdateFlags::Any).unwrap();
    assert_eq!(slot(m.lookup(&k(1)).unwrap().unwrap()), 12);
    let mut keys: Vec<u32> = m
        .keys()
        .map(|k| u32::from_ne_bytes(k.unwrap().try_into().unwrap()))
        .collect();
    keys.sort();
    assert_eq!(keys, vec![1, 2, 3]);
    let mut entries: Vec<(u32, u64)> = m
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| (u32::from_ne_bytes(e.key.try_into().unwrap()), slot(e.value)))
        .collect();
    entries.sort();
    assert_eq!(entries, vec![(1, 12), (2, 20), (3, 30)]);
    assert!(m.delete(&k(2)).unwrap());
    assert!(!m.delete(&k(2)).unwrap());
    let drained = m.drain_entries().unwrap();
    assert_eq!(drained.len(), 2);
    assert_eq!(m.keys().count(), 0);
    assert!(m.lookup(&[1, 2]).is_err(), "wrong key size must be refused");
}

/// Passes every call to the real kernel and records the bpf commands; with
/// `refuse_batch` the batch commands fail as on kernels without them.
#[derive(Default)]
struct PassThroughSys {
    cmds: std::cell::RefCell<Vec<BpfCmd>>,
    refuse_batch: bool,
}

impl Sys for PassThroughSys {
    fn bpf(&self, cmd: BpfCmd, attr: &mut BpfAttr) -> std::io::Result<i64> {
        self.cmds.borrow_mut().push(cmd);
        if self.refuse_batch
            && matches!(
                cmd,
                BpfCmd::MapLookupBatch | BpfCmd::MapLookupAndDeleteBatch
            )
        {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        RealSys.bpf(cmd, attr)
    }
    fn perf_event_open(
        &self,
        attr: &PerfEventAttr,
        pid: i32,
        cpu: i32,
        flags: u64,
    ) -> std::io::Result<OwnedFd> {
        RealSys.perf_event_open(attr, pid, cpu, flags)
    }
    fn ioctl(&self, fd: BorrowedFd<'_>, request: u64, arg: u64) -> std::io::Result<i32> {
        RealSys.ioctl(fd, request, arg)
    }
    fn mmap_shared(
        &self,
        fd: BorrowedFd<'_>,
        len: usize,
        prot: i32,
        offset: i64,
    ) -> std::io::Result<*mut u8> {
        RealSys.mmap_shared(fd, len, prot, offset)
    }
    fn munmap(&self, addr: *mut u8, len: usize) -> std::io::Result<()> {
        RealSys.munmap(addr, len)
    }
}

#[test]
fn map_hash_crud() {
    require_kernel!("map_hash_crud");
    let counting = Rc::new(PassThroughSys::default());
    let guard = sys::override_for_thread(counting.clone());
    check_keyed_map(MapType::Hash);
    drop(guard);
    let cmds = counting.cmds.borrow();
    // This kernel has batch ops for hash maps: the reads must have used them.
    assert!(cmds.contains(&BpfCmd::MapLookupBatch), "{cmds:?}");
    assert!(cmds.contains(&BpfCmd::MapLookupAndDeleteBatch), "{cmds:?}");
}

#[test]
fn map_lru_hash_crud() {
    require_kernel!("map_lru_hash_crud");
    check_keyed_map(MapType::LruHash);
    check_keyed_map(MapType::LruPercpuHash);
}

#[test]
fn map_reads_fall_back_without_batch_ops() {
    require_kernel!("map_reads_fall_back_without_batch_ops");
    let _guard = sys::override_for_thread(Rc::new(PassThroughSys {
        refuse_batch: true,
        ..PassThroughSys::default()
    }));
    check_keyed_map(MapType::Hash);
    check_keyed_map(MapType::PercpuHash);
}

#[test]
fn map_percpu_hash_crud_and_slots() {
    require_kernel!("map_percpu_hash_crud_and_slots");
    check_keyed_map(MapType::PercpuHash);
    let m = Map::create(&MapSpec::new("nx_t_pch", MapType::PercpuHash, 4, 4, 4)).unwrap();
    let ncpu = nexus_kernel::cpu::possible_cpu_count().unwrap();
    assert_eq!(m.syscall_value_len(), 8 * ncpu);
    // Distinct values per CPU: u32 values padded to 8 bytes each.
    let mut raw = vec![0u8; 8 * ncpu];
    for c in 0..ncpu {
        raw[c * 8..c * 8 + 4].copy_from_slice(&(100 + c as u32).to_ne_bytes());
    }
    m.update(&7u32.to_ne_bytes(), &raw, UpdateFlags::Any)
        .unwrap();
    let per = m.lookup_percpu(&7u32.to_ne_bytes()).unwrap().unwrap();
    assert_eq!(per.len(), ncpu);
    for (c, v) in per.iter().enumerate() {
        assert_eq!(v, &(100 + c as u32).to_ne_bytes());
    }
}

#[test]
fn map_array_and_percpu_array() {
    require_kernel!("map_array_and_percpu_array");
    for t in [MapType::Array, MapType::PercpuArray] {
        let m = Map::create(&MapSpec::new("nx_t_arr", t, 4, 8, 4)).unwrap();
        // Arrays are pre-populated with zeroes and refuse NOEXIST.
        let zero = m.lookup(&3u32.to_ne_bytes()).unwrap().unwrap();
        assert!(zero.iter().all(|&b| b == 0));
        let e = m
            .update(
                &1u32.to_ne_bytes(),
                &5u64.to_ne_bytes(),
                UpdateFlags::NoExist,
            )
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EEXIST));
        m.update(&1u32.to_ne_bytes(), &5u64.to_ne_bytes(), UpdateFlags::Exist)
            .unwrap();
        assert!(
            m.update(&4u32.to_ne_bytes(), &5u64.to_ne_bytes(), UpdateFlags::Any)
                .is_err()
        );
        assert_eq!(m.keys().count(), 4);
        let entries = m.entries().unwrap();
        assert_eq!(entries.len(), 4);
        let one = entries
            .iter()
            .find(|e| e.key == 1u32.to_ne_bytes())
            .unwrap();
        for slot in m.percpu_slots(&one.value) {
            assert_eq!(slot, 5u64.to_ne_bytes());
        }
    }
}

#[test]
fn map_queue_and_stack() {
    require_kernel!("map_queue_and_stack");
    for (t, first) in [(MapType::Queue, 1u32), (MapType::Stack, 2u32)] {
        let m = Map::create(&MapSpec::new("nx_t_qs", t, 0, 4, 4)).unwrap();
        m.push(&1u32.to_ne_bytes(), UpdateFlags::Any).unwrap();
        m.push(&2u32.to_ne_bytes(), UpdateFlags::Any).unwrap();
        assert_eq!(m.pop().unwrap().unwrap(), first.to_ne_bytes());
        assert!(m.pop().unwrap().is_some());
        assert!(m.pop().unwrap().is_none());
        assert!(
            m.entries()
                .unwrap_err()
                .to_string()
                .contains("does not support")
        );
    }
}

#[test]
fn map_stack_trace_and_ringbuf_create() {
    require_kernel!("map_stack_trace_and_ringbuf_create");
    let st = Map::create(&MapSpec::stack_trace("nx_t_st", 127, 64)).unwrap();
    assert_eq!(st.value_size(), 127 * 8);
    assert!(st.lookup(&0u32.to_ne_bytes()).unwrap().is_none());
    let rb = ringbuf_map("nx_t_rb");
    let mut cons = RingBuf::new(&rb).unwrap();
    assert_eq!(cons.pending_bytes(), 0);
    assert!(cons.next().is_none());
    assert!(RingBuf::new(&st).is_err());
}

// ---------------------------------------------------------------- programs

#[test]
fn tracepoint_delivers_pid_and_arguments() {
    require_kernel!("tracepoint_delivers_pid_and_arguments");
    let fmt = tracefs::tracepoint("syscalls", "sys_enter_write").unwrap();
    let fd_field = fmt.field("fd").unwrap();
    let count_field = fmt.field("count").unwrap();
    let rb = ringbuf_map("nx_t_tp_rb");
    let insns = Asm::default()
        .i(Insn::mov64(Reg::R6, Reg::R1))
        .only_thread(gettid())
        .reserve(24)
        .i(Insn::stx(Size::DW, Reg::R8, 0, Reg::R7))
        .i(Insn::ldx(
            Size::from_bytes(fd_field.size as usize).unwrap(),
            Reg::R1,
            Reg::R6,
            fd_field.offset as i16,
        ))
        .i(Insn::stx(Size::DW, Reg::R8, 8, Reg::R1))
        .i(Insn::ldx(
            Size::DW,
            Reg::R1,
            Reg::R6,
            count_field.offset as i16,
        ))
        .i(Insn::stx(Size::DW, Reg::R8, 16, Reg::R1))
        .submit()
        .finish();
    let prog = load("nx_t_tp", ProgType::Tracepoint, &insns, &[&rb]);
    let link = attach(&prog, &tracepoint("syscalls", "sys_enter_write")).unwrap();
    let mut cons = RingBuf::new(&rb).unwrap();
    // The perf event was opened on CPU 0 only; fire the tracepoint from the
    // last CPU to show the program still runs everywhere.
    pin_to_cpu(*nexus_kernel::cpu::online_cpus().unwrap().last().unwrap());
    let buf = [0u8; 8];
    // SAFETY: writing from a valid buffer to a (deliberately) bad fd.
    let r = unsafe { libc::write(987_654, buf.as_ptr().cast(), 4242) };
    assert_eq!(r, -1);
    let recs = wait_records(&mut cons, 1);
    drop(link);
    assert_eq!(recs.len(), 1, "expected one record from our thread");
    assert_eq!(u64_at(&recs[0], 0), u64::from(std::process::id()));
    assert_eq!(u64_at(&recs[0], 8), 987_654);
    assert_eq!(u64_at(&recs[0], 16), 4242);
}

#[test]
fn dropping_a_link_stops_events() {
    require_kernel!("dropping_a_link_stops_events");
    let counts = counter_map("nx_t_drop");
    let insns = Asm::default().only_thread(gettid()).count().finish();
    let prog = load("nx_t_drop", ProgType::Tracepoint, &insns, &[&counts]);
    let link = attach(&prog, &tracepoint("syscalls", "sys_enter_getppid")).unwrap();
    for _ in 0..3 {
        getppid_syscall();
    }
    assert_eq!(counter(&counts), 3);
    drop(link);
    for _ in 0..3 {
        getppid_syscall();
    }
    assert_eq!(
        counter(&counts),
        3,
        "events arrived after the link was dropped"
    );
}

#[test]
fn detach_all_stops_every_link() {
    require_kernel!("detach_all_stops_every_link");
    let counts = counter_map("nx_t_detach");
    let insns = Asm::default().only_thread(gettid()).count().finish();
    let tp = load("nx_t_det_tp", ProgType::Tracepoint, &insns, &[&counts]);
    let raw = load("nx_t_det_raw", ProgType::RawTracepoint, &insns, &[&counts]);
    let links = vec![
        attach(&tp, &tracepoint("syscalls", "sys_enter_getppid")).unwrap(),
        attach(&raw, &raw_tracepoint("sys_enter")).unwrap(),
    ];
    getppid_syscall();
    let before = counter(&counts);
    assert!(
        before >= 2,
        "both programs should have counted, got {before}"
    );
    nexus_kernel::detach_all(links);
    // The raw tracepoint counts every syscall of this thread, including
    // those detach_all made while the link was still attached.
    let after_detach = counter(&counts);
    for _ in 0..3 {
        getppid_syscall();
    }
    assert_eq!(
        counter(&counts),
        after_detach,
        "events arrived after detach_all"
    );
}

/// Programs whose context is `u64 args[]` with the syscall id in `args[1]`.
fn syscall_id_program(tid: u32) -> Vec<Insn> {
    Asm::default()
        .i(Insn::mov64(Reg::R6, Reg::R1))
        .only_thread(tid)
        .reserve(8)
        .i(Insn::ldx(Size::DW, Reg::R1, Reg::R6, 8))
        .i(Insn::stx(Size::DW, Reg::R8, 0, Reg::R1))
        .submit()
        .finish()
}

fn expect_getppid_ids(rb: &Map) {
    let mut cons = RingBuf::new(rb).unwrap();
    getppid_syscall();
    let recs = wait_records(&mut cons, 1);
    assert!(!recs.is_empty(), "no sys_enter record from our thread");
    assert!(
        recs.iter()
            .any(|r| u64_at(r, 0) == libc::SYS_getppid as u64),
        "no getppid id among {recs:?}"
    );
}

#[test]
fn raw_tracepoint_sys_enter() {
    require_kernel!("raw_tracepoint_sys_enter");
    let rb = ringbuf_map("nx_t_raw_rb");
    let insns = syscall_id_program(gettid());
    let prog = load("nx_t_raw", ProgType::RawTracepoint, &insns, &[&rb]);
    let _link = attach(&prog, &raw_tracepoint("sys_enter")).unwrap();
    expect_getppid_ids(&rb);
}

#[test]
fn tp_btf_sys_enter() {
    require_kernel!("tp_btf_sys_enter");
    let rb = ringbuf_map("nx_t_btf_rb");
    let insns = syscall_id_program(gettid());
    let spec = ProgramSpec::tracing("nx_t_tpbtf", BtfTarget::TpBtf("sys_enter".into()), &insns);
    let prog = match Program::load(&spec, &[&rb]) {
        Ok(p) => p,
        Err(e) => return skip("tp_btf_sys_enter", &e.to_string()),
    };
    let _link = attach(&prog, &AttachTarget::Tracing).unwrap();
    expect_getppid_ids(&rb);
}

#[test]
fn test_run_executes_a_begin_style_program() {
    require_kernel!("test_run_executes_a_begin_style_program");
    // A raw tracepoint program with no attach point, run once: emits the
    // caller's tgid and returns 7.
    let rb = ringbuf_map("nx_t_run_rb");
    let insns = Asm::default()
        .only_thread(gettid())
        .reserve(8)
        .i(Insn::stx(Size::DW, Reg::R8, 0, Reg::R7))
        .submit()
        .i(Insn::mov64_imm(Reg::R0, 7))
        .i(Insn::exit())
        .finish();
    let prog = load("nx_t_begin", ProgType::RawTracepoint, &insns, &[&rb]);
    let mut cons = RingBuf::new(&rb).unwrap();
    assert_eq!(prog.test_run(&[], None).unwrap(), 7);
    let recs = wait_records(&mut cons, 1);
    assert_eq!(recs.len(), 1);
    assert_eq!(u64_at(&recs[0], 0), u64::from(std::process::id()));
    // On another CPU the program runs in interrupt context, where the
    // current task is not ours: use a program without the thread filter.
    let seven = [Insn::mov64_imm(Reg::R0, 7), Insn::exit()];
    let prog = load("nx_t_begin2", ProgType::RawTracepoint, &seven, &[]);
    let last = *nexus_kernel::cpu::online_cpus().unwrap().last().unwrap();
    assert_eq!(prog.test_run(&[], Some(last)).unwrap(), 7);
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn nexus_kernel_test_uprobe_target(a: u64, b: u64) -> u64 {
    std::hint::black_box(a.wrapping_mul(3).wrapping_add(b))
}

#[test]
fn uprobe_and_uretprobe_see_arguments_and_return_value() {
    require_kernel!("uprobe_and_uretprobe_see_arguments_and_return_value");
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();
    let symbols =
        nexus_kernel::elf::list_symbols(std::path::Path::new(exe), "nexus_kernel_test_*").unwrap();
    assert!(
        symbols
            .iter()
            .any(|s| s == "nexus_kernel_test_uprobe_target"),
        "{symbols:?}"
    );
    let pid = Some(std::process::id() as i32);
    let rb = ringbuf_map("nx_t_up_rb");
    let tid = gettid();
    // Entry: record (1, di, si); return: record (2, ax, 0). pt_regs offsets: di 112, si 104, ax 80.
    let entry = Asm::default()
        .i(Insn::mov64(Reg::R6, Reg::R1))
        .only_thread(tid)
        .reserve(24)
        .i(Insn::st(Size::DW, Reg::R8, 0, 1))
        .i(Insn::ldx(Size::DW, Reg::R1, Reg::R6, 112))
        .i(Insn::stx(Size::DW, Reg::R8, 8, Reg::R1))
        .i(Insn::ldx(Size::DW, Reg::R1, Reg::R6, 104))
        .i(Insn::stx(Size::DW, Reg::R8, 16, Reg::R1))
        .submit()
        .finish();
    let ret = Asm::default()
        .i(Insn::mov64(Reg::R6, Reg::R1))
        .only_thread(tid)
        .reserve(24)
        .i(Insn::st(Size::DW, Reg::R8, 0, 2))
        .i(Insn::ldx(Size::DW, Reg::R1, Reg::R6, 80))
        .i(Insn::stx(Size::DW, Reg::R8, 8, Reg::R1))
        .i(Insn::st(Size::DW, Reg::R8, 16, 0))
        .submit()
        .finish();
    let p_entry = load("nx_t_up", ProgType::Kprobe, &entry, &[&rb]);
    let p_ret = load("nx_t_uret", ProgType::Kprobe, &ret, &[&rb]);
    let target = |retprobe| {
        AttachTarget::Uprobe(
            UprobeTarget::symbol(exe, "nexus_kernel_test_uprobe_target", retprobe, pid).unwrap(),
        )
    };
    let _l1 = attach(&p_entry, &target(false)).unwrap();
    let _l2 = attach(&p_ret, &target(true)).unwrap();
    let mut cons = RingBuf::new(&rb).unwrap();
    let f: extern "C" fn(u64, u64) -> u64 = std::hint::black_box(nexus_kernel_test_uprobe_target);
    let r = f(1000, 7);
    assert_eq!(r, 3007);
    let recs = wait_records(&mut cons, 2);
    let view: Vec<(u64, u64, u64)> = recs
        .iter()
        .map(|r| (u64_at(r, 0), u64_at(r, 8), u64_at(r, 16)))
        .collect();
    assert_eq!(view, vec![(1, 1000, 7), (2, 3007, 0)]);
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn nexus_kernel_test_ringbuf_target(seq: u64) -> u64 {
    std::hint::black_box(seq)
}

#[test]
fn ringbuf_wraps_around_and_skips_discarded_records() {
    require_kernel!("ringbuf_wraps_around_and_skips_discarded_records");
    let exe = std::env::current_exe().unwrap();
    // One page of data; 40-byte records take 48 bytes with the header, which
    // does not divide the size, so records straddle the end as it wraps.
    let page = sys::page_size() as u32;
    let rb = Map::create(&MapSpec::ringbuf("nx_t_wrap_rb", page)).unwrap();
    let insns = Asm::default()
        .i(Insn::mov64(Reg::R6, Reg::R1))
        .only_thread(gettid())
        .reserve(40)
        .i(Insn::ldx(Size::DW, Reg::R1, Reg::R6, 112))
        .i(Insn::stx(Size::DW, Reg::R8, 0, Reg::R1))
        .i(Insn::stx(Size::DW, Reg::R8, 32, Reg::R1))
        .i(Insn::mov64(Reg::R2, Reg::R1))
        .i(Insn::alu64(AluOp::And, Reg::R2, Src::Imm(1)))
        .jmp(JmpCond::Eq, Reg::R2, Src::Imm(0), "keep")
        .i(Insn::mov64(Reg::R1, Reg::R8))
        .i(Insn::mov64_imm(Reg::R2, 0))
        .call(Helper::RingbufDiscard)
        .goto("out")
        .label("keep")
        .submit()
        .finish();
    let prog = load("nx_t_wrap", ProgType::Kprobe, &insns, &[&rb]);
    let target = UprobeTarget::symbol(
        exe.to_str().unwrap(),
        "nexus_kernel_test_ringbuf_target",
        false,
        // System-wide (pid -1 on CPU 0): the program filters on our thread.
        None,
    )
    .unwrap();
    let _link = attach(&prog, &AttachTarget::Uprobe(target)).unwrap();
    let mut cons = RingBuf::new(&rb).unwrap();
    let f: extern "C" fn(u64) -> u64 = std::hint::black_box(nexus_kernel_test_ringbuf_target);
    let mut seen = Vec::new();
    for round in 0..12u64 {
        for i in 0..40 {
            f(round * 40 + i);
        }
        cons.drain(|r| {
            assert_eq!(r.len(), 40);
            assert_eq!(u64_at(r, 0), u64_at(r, 32), "record torn across the wrap");
            seen.push(u64_at(r, 0));
        });
        assert_eq!(cons.pending_bytes(), 0);
    }
    let expected: Vec<u64> = (0..480).filter(|s| s % 2 == 0).collect();
    assert_eq!(seen, expected);
}

#[test]
fn perf_event_cpu_clock_fires() {
    require_kernel!("perf_event_cpu_clock_fires");
    let counts = counter_map("nx_t_perf");
    let insns = Asm::default().count().finish();
    let prog = load("nx_t_perf", ProgType::PerfEvent, &insns, &[&counts]);
    let link = attach(
        &prog,
        &AttachTarget::PerfEvent(PerfEventTarget::profile_hz(1000)),
    )
    .unwrap();
    assert_eq!(link.len(), nexus_kernel::cpu::online_cpus().unwrap().len());
    let interval = attach(
        &prog,
        &AttachTarget::PerfEvent(PerfEventTarget::interval_ns(1_000_000)),
    )
    .unwrap();
    assert_eq!(interval.len(), 1);
    let start = Instant::now();
    while counter(&counts) == 0 && start.elapsed() < Duration::from_secs(3) {
        std::hint::black_box((0..10_000u64).sum::<u64>());
    }
    assert!(
        counter(&counts) > 0,
        "cpu-clock sampling never ran the program"
    );
}

#[test]
fn invalid_program_is_rejected_with_verifier_log() {
    require_kernel!("invalid_program_is_rejected_with_verifier_log");
    // r0 is never written before exit.
    let insns = [Insn::exit()];
    let err = Program::load(
        &ProgramSpec::new("nx_t_bad", ProgType::Tracepoint, &insns),
        &[] as &[Map],
    )
    .unwrap_err();
    assert_eq!(err.errno(), Some(libc::EACCES), "{err}");
    let log = err.verifier_log().unwrap();
    assert!(log.contains("R0 !read_ok"), "log: {log}");
    assert!(err.to_string().contains("R0 !read_ok"), "{err}");
    // A map index past the slice is caught before the kernel sees it.
    let mut bad = Asm::default();
    let insns = bad.map(Reg::R1, 3).finish();
    let err = Program::load(
        &ProgramSpec::new("nx_t_bad2", ProgType::Tracepoint, &insns),
        &[] as &[Map],
    )
    .unwrap_err();
    assert!(err.to_string().contains("map index 3"), "{err}");
}

#[test]
fn verifier_log_kept_on_success_when_asked() {
    require_kernel!("verifier_log_kept_on_success_when_asked");
    let insns = [Insn::mov64_imm(Reg::R0, 0), Insn::exit()];
    let spec = ProgramSpec::new("nx_t_log", ProgType::Tracepoint, &insns).with_log(true);
    let prog = Program::load(&spec, &[] as &[Map]).unwrap();
    assert!(prog.verifier_log().unwrap().contains("processed 2 insns"));
    assert!(prog.id().unwrap() > 0);
}

#[test]
fn kprobe_attach_reports_missing_kprobes() {
    require_kernel!("kprobe_attach_reports_missing_kprobes");
    let insns = [Insn::mov64_imm(Reg::R0, 0), Insn::exit()];
    let prog = load("nx_t_kp", ProgType::Kprobe, &insns, &[]);
    let res = attach(
        &prog,
        &AttachTarget::Kprobe(KprobeTarget {
            function: "do_sys_openat2".into(),
            offset: 0,
            retprobe: false,
        }),
    );
    if nexus_kernel::perf::pmu_exists("kprobe") {
        let link: Link = res.unwrap();
        assert_eq!(link.len(), 1);
    } else {
        let err = res.unwrap_err();
        assert!(matches!(err, AttachError::NoKprobes), "{err}");
        assert!(err.to_string().contains("CONFIG_KPROBES"));
    }
}

#[test]
fn fentry_failure_says_the_kernel_refused() {
    require_kernel!("fentry_failure_says_the_kernel_refused");
    let insns = [Insn::mov64_imm(Reg::R0, 0), Insn::exit()];
    let spec = ProgramSpec::tracing(
        "nx_t_fentry",
        BtfTarget::Fentry("do_sys_openat2".into()),
        &insns,
    );
    match Program::load(&spec, &[] as &[Map])
        .map(|p| attach(&p, &AttachTarget::Tracing).map(|l| (p, l)))
    {
        Ok(Ok((_p, link))) => assert_eq!(link.len(), 1),
        Ok(Err(e)) => assert!(e.to_string().contains("kernel refused"), "{e}"),
        Err(e) => {
            assert_eq!(e.errno(), Some(libc::EPERM), "{e}");
            assert!(e.to_string().contains("locked down"), "{e}");
        }
    }
}

#[test]
fn wrong_program_type_is_refused_before_the_kernel() {
    require_kernel!("wrong_program_type_is_refused_before_the_kernel");
    let insns = [Insn::mov64_imm(Reg::R0, 0), Insn::exit()];
    let prog = load("nx_t_wrong", ProgType::Kprobe, &insns, &[]);
    let err = attach(&prog, &raw_tracepoint("sys_enter")).unwrap_err();
    assert!(
        err.to_string().contains("needs a raw_tracepoint program"),
        "{err}"
    );
}

#[test]
fn tracepoints_are_listed() {
    require_kernel!("tracepoints_are_listed");
    let tps = tracefs::list_tracepoints("syscalls", "sys_enter_getp*").unwrap();
    assert!(
        tps.contains(&("syscalls".to_string(), "sys_enter_getppid".to_string())),
        "{tps:?}"
    );
    assert!(tps.iter().all(|(_, n)| n.starts_with("sys_enter_getp")));
}

// ---------------------------------------------------------------- RAII across SIGKILL

const CHILD_ENV: &str = "NEXUS_KERNEL_TEST_CHILD";

#[test]
fn sigkill_leaves_nothing_attached() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // Child: attach, report the program id, wait to be killed.
        let insns = [Insn::mov64_imm(Reg::R0, 0), Insn::exit()];
        let prog = load("nx_t_child", ProgType::Tracepoint, &insns, &[]);
        let _link = attach(&prog, &tracepoint("syscalls", "sys_enter_getppid")).unwrap();
        println!("READY {}", prog.id().unwrap());
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    require_kernel!("sigkill_leaves_nothing_attached");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_leaves_nothing_attached",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let id: u32 = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split_once("READY ")
                .and_then(|(_, id)| id.trim().parse().ok())
        })
        .expect("child reported its program id");
    assert!(
        loaded_program_ids().unwrap().contains(&id),
        "child's program {id} not loaded"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while loaded_program_ids().unwrap().contains(&id) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !loaded_program_ids().unwrap().contains(&id),
        "program {id} still loaded 10 s after its owner was SIGKILLed"
    );
}

// ---------------------------------------------------------------- doctor

#[test]
fn capabilities_are_probed() {
    require_kernel!("capabilities_are_probed");
    let caps = nexus_kernel::probe_capabilities();
    eprintln!(
        "probe_capabilities took {} us: {caps:#?}",
        caps.probe_micros
    );
    assert!(caps.bpf_syscall.available, "{:?}", caps.bpf_syscall);
    assert!(caps.tracepoint.available, "{:?}", caps.tracepoint);
    assert!(caps.raw_tracepoint.available, "{:?}", caps.raw_tracepoint);
    assert!(caps.ringbuf.available, "{:?}", caps.ringbuf);
    assert!(!caps.kernel_release.is_empty());
    for c in [
        &caps.kprobe,
        &caps.fentry,
        &caps.fexit,
        &caps.uprobe,
        &caps.tp_btf,
        &caps.perf_event,
    ] {
        assert!(
            c.available || !c.detail.is_empty(),
            "unavailable without a reason: {c:?}"
        );
    }
    assert_eq!(
        caps.kprobe.available,
        nexus_kernel::perf::pmu_exists("kprobe")
    );
}

// ---------------------------------------------------------------- probe facts

#[test]
fn btf_function_listing_and_parameters() {
    let funcs = match nexus_kernel::btf::kernel_functions("do_sys_open*") {
        Ok(f) => f,
        Err(e) => return skip("btf_function_listing_and_parameters", &e.to_string()),
    };
    assert!(funcs.iter().any(|f| f == "do_sys_openat2"), "{funcs:?}");
    let params = nexus_kernel::btf::kernel_function_params("do_sys_openat2").unwrap();
    let shape: Vec<(&str, u32, bool, bool)> = params
        .iter()
        .map(|p| (p.name.as_str(), p.size, p.signed, p.pointer))
        .collect();
    // long do_sys_openat2(int dfd, const char __user *filename, struct open_how *how)
    assert_eq!(
        shape,
        vec![
            ("dfd", 4, true, false),
            ("filename", 8, false, true),
            ("how", 8, false, true)
        ]
    );
}

#[test]
fn every_syscall_tracepoint_has_a_number() {
    require_kernel!("every_syscall_tracepoint_has_a_number");
    let tps = tracefs::list_tracepoints("syscalls", "sys_enter_*").unwrap();
    assert!(tps.len() > 200, "only {} syscall tracepoints", tps.len());
    let missing: Vec<&str> = tps
        .iter()
        .map(|(_, n)| &n["sys_enter_".len()..])
        .filter(|n| nexus_kernel::syscalls::number(n).is_none())
        .collect();
    assert!(missing.is_empty(), "no syscall number for {missing:?}");
}

#[test]
fn kernel_catalog_answers_from_this_machine() {
    use nexus_compile::ProbeCatalog;
    require_kernel!("kernel_catalog_answers_from_this_machine");
    let c = nexus_kernel::KernelCatalog;
    assert_eq!(
        c.tracepoints("syscalls", "sys_enter_openat").unwrap(),
        vec![("syscalls".to_string(), "sys_enter_openat".to_string())]
    );
    assert!(
        c.tracepoints("syscalls", "no_such_event")
            .unwrap()
            .is_empty()
    );
    let fields = c
        .tracepoint_fields("syscalls", "sys_enter_openat")
        .unwrap()
        .unwrap();
    let filename = fields.iter().find(|f| f.name == "filename").unwrap();
    assert!(filename.is_pointer() && filename.is_char(), "{filename:?}");
    assert!(fields.iter().any(|f| f.is_common()));
    assert!(
        c.tracepoint_fields("syscalls", "no_such_event")
            .unwrap()
            .is_none()
    );
    let libc = c.resolve_binary("libc").unwrap().unwrap();
    assert!(libc.starts_with('/') && libc.contains("libc.so"), "{libc}");
    assert!(c.resolve_binary("no_such_library_xyz").unwrap().is_none());
    assert!(
        c.user_functions(&libc, "getppid")
            .unwrap()
            .contains(&"getppid".to_string())
    );
    assert_eq!(c.has_kprobes(), nexus_kernel::perf::pmu_exists("kprobe"));
    assert_eq!(c.syscall_number("openat"), Some(libc::SYS_openat as u32));
    if nexus_kernel::btf::vmlinux().is_ok() {
        assert!(c.kernel_functions("do_sys_openat2").unwrap().len() == 1);
        assert_eq!(
            c.kernel_function_args("do_sys_openat2")
                .unwrap()
                .unwrap()
                .len(),
            3
        );
        assert!(
            c.kernel_function_args("no_such_function_xyz")
                .unwrap()
                .is_none()
        );
    }
}
