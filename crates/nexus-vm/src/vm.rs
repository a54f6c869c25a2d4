//! The VM: a set of maps shared by any number of loaded programs, the
//! helpers they may call, the platform they run on, and the host-side API.

use crate::helpers::{HelperContext, HelperError, HelperRegistry};
use crate::interp::{self, Env, MAX_CALL_DEPTH, RunError, STACK_SIZE};
use crate::maps::{Map, MapError, MapSpec};
use crate::memory::{Ctx, HostRegion, Memory, REGION_CTX, REGION_HOST, make_ptr, split_ptr};
use crate::platform::{Platform, RealPlatform};
use crate::program::{self, Program, VerifyError};
use nexus_insn::Insn;
use std::sync::Arc;

/// Default instruction budget per run.
pub const DEFAULT_BUDGET: u64 = 1_000_000;

/// Errors of the VM's public API.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("program rejected: {0}")]
    Verify(#[from] VerifyError),
    #[error("program faulted: {0}")]
    Run(#[from] RunError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Helper(#[from] HelperError),
    #[error("no program with id {0}")]
    NoSuchProgram(usize),
    #[error("context of {0} bytes is too large (limit 4 GiB)")]
    ContextTooLarge(usize),
    #[error("bad hex input: {0}")]
    Hex(String),
    #[error("program bytecode: {0}")]
    Decode(String),
}

/// A loaded program, by index in its VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProgramId(pub usize);

/// A userspace eBPF machine.
#[derive(Debug)]
pub struct Vm {
    maps: Vec<Map>,
    programs: Vec<Program>,
    stack: Vec<u8>,
    host: Vec<HostRegion>,
    helpers: HelperRegistry,
    platform: Arc<dyn Platform>,
    trace_log: Vec<String>,
    rng: u64,
    budget: u64,
}

impl Vm {
    /// A VM with `maps` (referenced by index from programs) on the real platform.
    pub fn new(maps: &[MapSpec]) -> Result<Vm, VmError> {
        Vm::with_platform(maps, Arc::new(RealPlatform::new()))
    }

    /// A VM with `maps` on `platform` (e.g. a [`crate::MockPlatform`]).
    pub fn with_platform(maps: &[MapSpec], platform: Arc<dyn Platform>) -> Result<Vm, VmError> {
        let cpus = platform.num_cpus();
        let maps = maps
            .iter()
            .map(|s| Map::new(s, cpus))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Vm {
            maps,
            programs: Vec::new(),
            stack: vec![0; STACK_SIZE * MAX_CALL_DEPTH],
            host: Vec::new(),
            helpers: HelperRegistry::default(),
            platform,
            trace_log: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            budget: DEFAULT_BUDGET,
        })
    }

    /// Register a custom helper under `id`; do it before loading programs that call it.
    pub fn register_helper(
        &mut self,
        id: i32,
        name: &str,
        f: impl Fn(&mut HelperContext<'_, '_>, [u64; 5]) -> u64 + Send + Sync + 'static,
    ) -> Result<(), VmError> {
        Ok(self.helpers.register(id, name, f)?)
    }

    #[must_use]
    pub fn helpers(&self) -> &HelperRegistry {
        &self.helpers
    }

    /// Verify, pre-decode and keep a program. Its `LD_IMM64` map pseudo
    /// loads (`BPF_PSEUDO_MAP_IDX`, `BPF_PSEUDO_MAP_IDX_VALUE`, and the fd
    /// forms, whose "fd" is taken as the index) refer to this VM's maps.
    pub fn load(&mut self, insns: &[Insn]) -> Result<ProgramId, VmError> {
        let p = program::load(insns, &self.maps, &self.helpers)?;
        self.programs.push(p);
        Ok(ProgramId(self.programs.len() - 1))
    }

    /// Decode kernel bytecode (8 bytes per instruction) and load it.
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<ProgramId, VmError> {
        let insns = nexus_insn::decode(bytes).map_err(|e| VmError::Decode(e.to_string()))?;
        self.load(&insns)
    }

    #[must_use]
    pub fn program(&self, id: ProgramId) -> Option<&Program> {
        self.programs.get(id.0)
    }

    /// Run with a writable context: r1 points at `ctx`, r2 holds its length.
    pub fn run(&mut self, id: ProgramId, ctx: &mut [u8]) -> Result<u64, VmError> {
        let len = ctx.len();
        self.run_ctx(id, Ctx::Writable(ctx), len)
    }

    /// Run with a read-only context (as tracepoint arguments are).
    pub fn run_readonly(&mut self, id: ProgramId, ctx: &[u8]) -> Result<u64, VmError> {
        self.run_ctx(id, Ctx::ReadOnly(ctx), ctx.len())
    }

    fn run_ctx(&mut self, id: ProgramId, ctx: Ctx<'_>, len: usize) -> Result<u64, VmError> {
        if u32::try_from(len).is_err() {
            return Err(VmError::ContextTooLarge(len));
        }
        let prog = self
            .programs
            .get(id.0)
            .ok_or(VmError::NoSuchProgram(id.0))?;
        // Frame 0 (the top of the stack area) starts zeroed so a run never
        // sees an earlier run's stack.
        let lo = self.stack.len() - STACK_SIZE;
        self.stack[lo..].fill(0);
        let mut mem = Memory {
            ctx,
            stack: &mut self.stack,
            stack_lo: lo,
            maps: &mut self.maps,
            host: &mut self.host,
        };
        let mut env = Env {
            helpers: &self.helpers,
            platform: &*self.platform,
            log: &mut self.trace_log,
            rng: &mut self.rng,
            budget: self.budget,
        };
        let r = interp::run(
            prog,
            &mut mem,
            &mut env,
            make_ptr(REGION_CTX, 0, 0),
            len as u64,
        );
        if prog.uses_ringbuf {
            for m in &mut self.maps {
                if let Some(rb) = m.ringbuf() {
                    rb.discard_outstanding();
                }
            }
        }
        Ok(r?)
    }

    /// Instructions a run may execute before it is stopped.
    pub fn set_budget(&mut self, budget: u64) {
        self.budget = budget;
    }

    /// Seed `bpf_get_prandom_u32` (runs are then reproducible).
    pub fn seed_prandom(&mut self, seed: u64) {
        self.rng = seed | 1;
    }

    #[must_use]
    pub fn platform(&self) -> &Arc<dyn Platform> {
        &self.platform
    }

    /// The map at `index`.
    pub fn map(&self, index: usize) -> Result<&Map, VmError> {
        let count = self.maps.len();
        Ok(self
            .maps
            .get(index)
            .ok_or(MapError::NoSuchMap { index, count })?)
    }
    pub fn map_mut(&mut self, index: usize) -> Result<&mut Map, VmError> {
        let count = self.maps.len();
        Ok(self
            .maps
            .get_mut(index)
            .ok_or(MapError::NoSuchMap { index, count })?)
    }
    /// The first map called `name`.
    #[must_use]
    pub fn map_by_name(&self, name: &str) -> Option<&Map> {
        self.maps.iter().find(|m| m.name() == name)
    }
    #[must_use]
    pub fn maps(&self) -> &[Map] {
        &self.maps
    }

    /// Hand every submitted record of ring buffer `index` to `f`.
    pub fn drain_ringbuf(&mut self, index: usize, f: impl FnMut(&[u8])) -> Result<usize, VmError> {
        let m = self.map_mut(index)?;
        let name = m.name().to_string();
        let t = m.map_type().name();
        match m.ringbuf() {
            Some(rb) => Ok(rb.drain(f)),
            None => Err(MapError::Unsupported {
                map: name,
                op: "drain",
                map_type: t,
            }
            .into()),
        }
    }

    /// Lend `data` to programs; returns its address. Reads through
    /// `probe_read*` (and plain loads) are allowed, writes only if `writable`.
    pub fn register_memory(&mut self, data: Vec<u8>, writable: bool) -> u64 {
        // Reuse a freed index so long-running hosts don't run out of ids.
        let region = HostRegion {
            data,
            writable,
            live: true,
        };
        let index = match self.host.iter().position(|h| !h.live) {
            Some(i) => {
                self.host[i] = region;
                i
            }
            None => {
                self.host.push(region);
                self.host.len() - 1
            }
        };
        make_ptr(REGION_HOST, index as u32, 0)
    }

    /// The block registered at `addr`.
    #[must_use]
    pub fn memory(&self, addr: u64) -> Option<&[u8]> {
        let (kind, index, _) = split_ptr(addr);
        (kind == REGION_HOST)
            .then(|| self.host.get(index as usize))
            .flatten()
            .filter(|h| h.live)
            .map(|h| &h.data[..])
    }

    /// Take back the block registered at `addr`; later accesses fault.
    pub fn unregister_memory(&mut self, addr: u64) -> Option<Vec<u8>> {
        let (kind, index, _) = split_ptr(addr);
        let h = self
            .host
            .get_mut(index as usize)
            .filter(|h| kind == REGION_HOST && h.live)?;
        h.live = false;
        Some(std::mem::take(&mut h.data))
    }

    /// Lines written by `bpf_trace_printk` (and custom helpers) since the last call.
    pub fn take_trace_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trace_log)
    }
}
