//! The compiler's [`ProbeCatalog`] answered from this machine: tracefs for
//! tracepoints, ELF for user functions, vmlinux BTF for kernel functions,
//! the kprobe PMU for `has_kprobes`, the x86_64 syscall table, and vmlinux
//! BTF for struct member offsets.

use crate::btf::{self, BtfError, MemberType};
use crate::elf::{self, ElfError};
use crate::tracefs::{self, TracefsError};
use crate::{perf, syscalls};
use nexus_compile::{
    BtfArg, CatalogError, KernelMember, KernelType, ProbeCatalog, TracepointField,
};

/// The real probe catalog. Stateless: tracefs and ELF are read on each
/// question; vmlinux BTF is parsed once per process.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelCatalog;

fn err(e: impl std::fmt::Display) -> CatalogError {
    CatalogError(e.to_string())
}

impl ProbeCatalog for KernelCatalog {
    fn tracepoints(
        &self,
        category: &str,
        event: &str,
    ) -> Result<Vec<(String, String)>, CatalogError> {
        tracefs::list_tracepoints(category, event).map_err(err)
    }

    fn tracepoint_fields(
        &self,
        category: &str,
        event: &str,
    ) -> Result<Option<Vec<TracepointField>>, CatalogError> {
        match tracefs::tracepoint(category, event) {
            Ok(fmt) => Ok(Some(
                fmt.fields
                    .into_iter()
                    .map(|f| TracepointField {
                        name: f.name,
                        c_type: f.c_type,
                        offset: f.offset,
                        size: f.size,
                        signed: f.signed,
                    })
                    .collect(),
            )),
            Err(TracefsError::NoTracepoint { .. }) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    fn resolve_binary(&self, binary: &str) -> Result<Option<String>, CatalogError> {
        match elf::resolve_binary(binary) {
            // The uprobe PMU resolves relative paths against the tracer's
            // cwd; an absolute path keeps the artifact meaningful elsewhere.
            Ok(p) => Ok(Some(
                std::path::absolute(&p).unwrap_or(p).display().to_string(),
            )),
            Err(ElfError::NotFound { .. }) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    fn user_functions(&self, path: &str, pattern: &str) -> Result<Vec<String>, CatalogError> {
        elf::list_symbols(std::path::Path::new(path), pattern).map_err(err)
    }

    fn kernel_functions(&self, pattern: &str) -> Result<Vec<String>, CatalogError> {
        btf::kernel_functions(pattern).map_err(err)
    }

    fn has_kprobes(&self) -> bool {
        perf::pmu_exists("kprobe")
    }

    fn kernel_function_args(&self, function: &str) -> Result<Option<Vec<BtfArg>>, CatalogError> {
        match btf::kernel_function_params(function) {
            Ok(params) => Ok(Some(
                params
                    .into_iter()
                    .map(|p| BtfArg {
                        name: p.name,
                        size: p.size,
                        signed: p.signed,
                        pointer: p.pointer,
                    })
                    .collect(),
            )),
            Err(BtfError::NotFound { .. }) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    fn syscall_number(&self, name: &str) -> Option<u32> {
        syscalls::number(name)
    }

    fn struct_member(
        &self,
        strukt: &str,
        member: &str,
    ) -> Result<Option<(u32, u32)>, CatalogError> {
        match btf::kernel_struct_member(strukt, member) {
            // A bitfield has no byte offset to read from.
            Ok(m) if m.bitfield_size == 0 && m.bit_offset % 8 == 0 => {
                Ok(Some((m.bit_offset / 8, m.size)))
            }
            Ok(_) | Err(BtfError::NotFound { .. }) => Ok(None),
            // No BTF on this system: nothing to look up, not a failure.
            Err(BtfError::Read { .. }) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    fn struct_member_type(
        &self,
        strukt: &str,
        member: &str,
    ) -> Result<Option<KernelMember>, CatalogError> {
        match btf::kernel_struct_member_type(strukt, member) {
            // A bitfield has no byte offset to read from.
            Ok((m, ty)) if m.bitfield_size == 0 && m.bit_offset % 8 == 0 => {
                let ty = match ty {
                    MemberType::Int { size, signed } => KernelType::Int { size, signed },
                    MemberType::Pointer { pointee } => KernelType::Pointer { pointee },
                    MemberType::CharArray { len } => KernelType::CharArray { len },
                    MemberType::Composite { name } => KernelType::Composite { name },
                    MemberType::Other => KernelType::Other,
                };
                Ok(Some(KernelMember {
                    offset: m.bit_offset / 8,
                    ty,
                }))
            }
            Ok(_) | Err(BtfError::NotFound { .. }) => Ok(None),
            // No BTF on this system: nothing to look up, not a failure.
            Err(BtfError::Read { .. }) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }
}
