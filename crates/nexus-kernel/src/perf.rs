//! perf events: PMU discovery in sysfs and `perf_event_open` for
//! tracepoints, kprobe/uprobe PMU probes and software sampling events.

use crate::sys::{self, PerfEventAttr};
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// `PERF_TYPE_SOFTWARE`.
pub const PERF_TYPE_SOFTWARE: u32 = 1;
/// `PERF_TYPE_TRACEPOINT`.
pub const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `PERF_COUNT_SW_CPU_CLOCK`.
pub const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
/// `PERF_SAMPLE_RAW`, which BPF perf-event programs conventionally set.
const PERF_SAMPLE_RAW: u64 = 1 << 10;

const PMU_DIR: &str = "/sys/bus/event_source/devices";

#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error("the {pmu} PMU is missing ({path} does not exist)")]
    NoPmu { pmu: String, path: String },
    #[error("reading the {pmu} PMU description {path}: {message}")]
    Pmu {
        pmu: String,
        path: String,
        message: String,
    },
    #[error("{what}: {arg} contains a NUL byte")]
    Nul { what: &'static str, arg: String },
    #[error("perf_event_open for {what} failed: {source}")]
    Open {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// A dynamic PMU (`kprobe`, `uprobe`) as sysfs describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbePmu {
    /// `perf_event_attr.type`.
    pub type_: u32,
    /// The `config` bit that turns a probe into a return probe.
    pub retprobe_bit: u32,
}

/// Whether the PMU directory exists (`kprobe` is absent without `CONFIG_KPROBES`).
#[must_use]
pub fn pmu_exists(pmu: &str) -> bool {
    PathBuf::from(PMU_DIR).join(pmu).is_dir()
}

/// Read `type` and `format/retprobe` of a probe PMU.
pub fn probe_pmu(pmu: &str) -> Result<ProbePmu, PerfError> {
    let dir = PathBuf::from(PMU_DIR).join(pmu);
    if !dir.is_dir() {
        return Err(PerfError::NoPmu {
            pmu: pmu.to_string(),
            path: dir.display().to_string(),
        });
    }
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|e| PerfError::Pmu {
            pmu: pmu.to_string(),
            path: p.display().to_string(),
            message: e.to_string(),
        })
    };
    let type_path = dir.join("type");
    let type_text = read(type_path.clone())?;
    let type_ = type_text.trim().parse().map_err(|_| PerfError::Pmu {
        pmu: pmu.to_string(),
        path: type_path.display().to_string(),
        message: format!("not a number: {:?}", type_text.trim()),
    })?;
    let ret_path = dir.join("format/retprobe");
    let ret_text = read(ret_path.clone())?;
    let retprobe_bit = parse_config_bit(&ret_text).ok_or_else(|| PerfError::Pmu {
        pmu: pmu.to_string(),
        path: ret_path.display().to_string(),
        message: format!("expected `config:N`, got {:?}", ret_text.trim()),
    })?;
    Ok(ProbePmu {
        type_,
        retprobe_bit,
    })
}

/// `config:0` → 0.
fn parse_config_bit(text: &str) -> Option<u32> {
    text.trim()
        .strip_prefix("config:")?
        .parse()
        .ok()
        .filter(|&b| b < 64)
}

/// Open a tracepoint event (`PERF_TYPE_TRACEPOINT`, config = tracepoint id)
/// for all processes. One event suffices for a BPF program: the program
/// runs on every CPU the tracepoint fires on.
pub fn open_tracepoint(id: u32, what: &str) -> Result<OwnedFd, PerfError> {
    let attr = PerfEventAttr {
        type_: PERF_TYPE_TRACEPOINT,
        config: u64::from(id),
        sample_period_or_freq: 1,
        wakeup_events: 1,
        disabled: true,
        ..Default::default()
    };
    sys::perf_event_open(&attr, -1, 0).map_err(|source| PerfError::Open {
        what: what.to_string(),
        source,
    })
}

/// Open a kprobe/uprobe PMU event. `target` is the function (kprobe) or
/// file path (uprobe); `offset` the offset within it. `pid` `None` traces
/// every process (which the kernel requires to be opened on one CPU).
pub fn open_probe(
    pmu_name: &str,
    target: &str,
    offset: u64,
    retprobe: bool,
    pid: Option<i32>,
) -> Result<OwnedFd, PerfError> {
    let pmu = probe_pmu(pmu_name)?;
    let target_c = CString::new(target).map_err(|_| PerfError::Nul {
        what: "probe target",
        arg: target.to_string(),
    })?;
    let attr = PerfEventAttr {
        type_: pmu.type_,
        config: if retprobe {
            1u64 << pmu.retprobe_bit
        } else {
            0
        },
        sample_period_or_freq: 1,
        wakeup_events: 1,
        disabled: true,
        config1: target_c.as_ptr() as usize as u64,
        config2: offset,
        ..Default::default()
    };
    let (pid, cpu) = match pid {
        Some(p) => (p, -1),
        None => (-1, 0),
    };
    // `target_c` stays alive until after this call returns.
    let r = sys::perf_event_open(&attr, pid, cpu);
    drop(target_c);
    r.map_err(|source| PerfError::Open {
        what: format!(
            "{pmu_name} {}{target}+{offset:#x}",
            if retprobe { "return probe " } else { "" }
        ),
        source,
    })
}

/// How a sampling event fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// This many times per second.
    Frequency(u64),
    /// Every this many events (nanoseconds for the clock events).
    Period(u64),
}

/// Open a software event (`PERF_TYPE_SOFTWARE`, `config`) on `cpu` for all processes.
pub fn open_software(config: u64, sample: Sample, cpu: u32) -> Result<OwnedFd, PerfError> {
    let (value, freq) = match sample {
        Sample::Frequency(hz) => (hz, true),
        Sample::Period(p) => (p, false),
    };
    let attr = PerfEventAttr {
        type_: PERF_TYPE_SOFTWARE,
        config,
        sample_period_or_freq: value,
        freq,
        sample_type: PERF_SAMPLE_RAW,
        disabled: true,
        ..Default::default()
    };
    sys::perf_event_open(&attr, -1, cpu as i32).map_err(|source| PerfError::Open {
        what: format!("software event {config} on CPU {cpu}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bits() {
        assert_eq!(parse_config_bit("config:0\n"), Some(0));
        assert_eq!(parse_config_bit("config:63"), Some(63));
        assert_eq!(parse_config_bit("config1:0"), None);
        assert_eq!(parse_config_bit("config:64"), None);
    }
}
