//! ELF symbols for uprobes: resolving a binary or library name to a path,
//! a symbol to the file offset the `uprobe` PMU wants, and listing symbols.

use crate::tracefs::glob_match;
use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};
use std::path::{Path, PathBuf};

/// Library directories searched when `ld.so.cache` has no answer.
const LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];
const LD_SO_CACHE: &str = "/etc/ld.so.cache";

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot find {name:?}: not a path, not an executable on $PATH, and not a library in ld.so.cache or {dirs}", dirs = LIB_DIRS.join(", "))]
    NotFound { name: String },
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is not a readable ELF file: {message}")]
    Parse { path: String, message: String },
    #[error("no function symbol {symbol:?} in {path}")]
    NoSymbol { path: String, symbol: String },
    #[error("symbol {symbol:?} at {addr:#x} in {path} is in no loadable segment")]
    NoSegment {
        path: String,
        symbol: String,
        addr: u64,
    },
}

/// Turn `bash`, `libc`, `libc.so.6` or `/usr/bin/bash` into a file path, like
/// bpftrace: a path is taken as is, then `$PATH`, then the library cache.
pub fn resolve_binary(name: &str) -> Result<PathBuf, ElfError> {
    let not_found = || ElfError::NotFound {
        name: name.to_string(),
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return if p.is_file() { Ok(p) } else { Err(not_found()) };
    }
    if let Some(p) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
    {
        return Ok(p);
    }
    resolve_library(name).ok_or_else(not_found)
}

/// Find a shared library by name (`c`, `libc`, `libc.so.6`).
#[must_use]
pub fn resolve_library(name: &str) -> Option<PathBuf> {
    let base = if name.starts_with("lib") {
        name.to_string()
    } else {
        format!("lib{name}")
    };
    let matches =
        |file: &str| file == name || file == base || file.starts_with(&format!("{base}.so"));
    if let Ok(data) = std::fs::read(LD_SO_CACHE) {
        let hit = parse_ld_so_cache(&data)
            .into_iter()
            .filter(|(k, _)| matches(k))
            .min_by_key(|(k, _)| k.len());
        if let Some((_, path)) = hit {
            return Some(PathBuf::from(path));
        }
    }
    let mut best: Option<PathBuf> = None;
    for dir in LIB_DIRS {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if matches(&f)
                && best
                    .as_ref()
                    .is_none_or(|b| b.as_os_str().len() > e.path().as_os_str().len())
            {
                best = Some(e.path());
            }
        }
        if best.is_some() {
            break;
        }
    }
    best
}

/// (soname, path) pairs for the x86-64 libraries in a glibc `ld.so.cache`
/// ("glibc-ld.so.cache1.1" format, possibly after an old-format section).
#[must_use]
pub fn parse_ld_so_cache(data: &[u8]) -> Vec<(String, String)> {
    const NEW: &[u8] = b"glibc-ld.so.cache1.1";
    const OLD: &[u8] = b"ld.so-1.7.0";
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let mut start = 0;
    if data.starts_with(OLD) {
        // Old header: 12-byte magic, nlibs; 12-byte entries; then the new
        // section aligned to 8 bytes.
        let Some(n) = u32_at(12) else {
            return Vec::new();
        };
        start = (16 + n * 12).next_multiple_of(8);
    }
    if data.get(start..start + NEW.len()) != Some(NEW) {
        return Vec::new();
    }
    let Some(nlibs) = u32_at(start + 20) else {
        return Vec::new();
    };
    let cstr = |o: usize| {
        let rest = data.get(o..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
    };
    let mut out = Vec::new();
    for i in 0..nlibs {
        let e = start + 48 + i * 24;
        let (Some(flags), Some(key), Some(value)) = (u32_at(e), u32_at(e + 4), u32_at(e + 8))
        else {
            break;
        };
        // FLAG_X8664_LIB64 in the architecture byte.
        if flags & 0xff00 != 0x0300 {
            continue;
        }
        if let (Some(k), Some(v)) = (cstr(key), cstr(value)) {
            out.push((k, v));
        }
    }
    out
}

fn read_elf(path: &Path) -> Result<Vec<u8>, ElfError> {
    std::fs::read(path).map_err(|e| ElfError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn parse<'d>(path: &Path, data: &'d [u8]) -> Result<object::File<'d>, ElfError> {
    object::File::parse(data).map_err(|e| ElfError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// `memcpy@@GLIBC_2.14` → `memcpy`.
fn unversioned(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// The file offset of function `symbol` in the ELF at `path`, as the
/// `uprobe` PMU takes it: symbol address − segment address + segment offset.
/// Versioned names match their unversioned symbol.
pub fn symbol_offset(path: &Path, symbol: &str) -> Result<u64, ElfError> {
    let data = read_elf(path)?;
    let obj = parse(path, &data)?;
    let want = unversioned(symbol);
    let addr = obj
        .symbols()
        .chain(obj.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0 && !s.is_undefined())
        .find(|s| s.name().is_ok_and(|n| unversioned(n) == want))
        .map(|s| s.address())
        .ok_or_else(|| ElfError::NoSymbol {
            path: path.display().to_string(),
            symbol: symbol.to_string(),
        })?;
    addr_to_offset(&obj, addr).ok_or_else(|| ElfError::NoSegment {
        path: path.display().to_string(),
        symbol: symbol.to_string(),
        addr,
    })
}

/// The file offset of the ELF entry point (`e_entry`): an instruction
/// address every executable has, even a stripped one.
pub fn entry_offset(path: &Path) -> Result<u64, ElfError> {
    let data = read_elf(path)?;
    let obj = parse(path, &data)?;
    addr_to_offset(&obj, obj.entry()).ok_or_else(|| ElfError::NoSegment {
        path: path.display().to_string(),
        symbol: "entry point".to_string(),
        addr: obj.entry(),
    })
}

/// `addr − vaddr + file offset` of the loadable segment containing `addr`.
fn addr_to_offset(obj: &object::File<'_>, addr: u64) -> Option<u64> {
    obj.segments().find_map(|seg| {
        let (vaddr, size) = (seg.address(), seg.size());
        (addr >= vaddr && addr < vaddr + size).then(|| addr - vaddr + seg.file_range().0)
    })
}

/// Defined function symbols of the ELF at `path` whose (unversioned) name
/// matches `glob`, sorted and deduplicated.
pub fn list_symbols(path: &Path, glob: &str) -> Result<Vec<String>, ElfError> {
    let data = read_elf(path)?;
    let obj = parse(path, &data)?;
    let mut names: Vec<String> = obj
        .symbols()
        .chain(obj.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0 && !s.is_undefined())
        .filter_map(|s| s.name().ok().map(|n| unversioned(n).to_string()))
        .filter(|n| !n.is_empty() && glob_match(glob, n))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_versions() {
        assert_eq!(unversioned("memcpy@@GLIBC_2.14"), "memcpy");
        assert_eq!(unversioned("malloc"), "malloc");
    }

    #[test]
    fn ld_so_cache_entries() {
        let mut d = b"glibc-ld.so.cache1.1".to_vec();
        d.resize(48, 0);
        d[20..24].copy_from_slice(&2u32.to_ne_bytes());
        let strings_at = 48 + 2 * 24;
        let strs = b"libc.so.6\0/lib/x86_64-linux-gnu/libc.so.6\0libm.so.6\0/lib32/libm.so.6\0";
        let e = |flags: u32, k: usize, v: usize| {
            let mut b = Vec::new();
            b.extend_from_slice(&flags.to_ne_bytes());
            b.extend_from_slice(&((strings_at + k) as u32).to_ne_bytes());
            b.extend_from_slice(&((strings_at + v) as u32).to_ne_bytes());
            b.extend_from_slice(&[0; 12]);
            b
        };
        d.extend(e(0x0303, 0, 10));
        d.extend(e(0x0003, 42, 52));
        d.extend_from_slice(strs);
        let got = parse_ld_so_cache(&d);
        assert_eq!(
            got,
            vec![(
                "libc.so.6".to_string(),
                "/lib/x86_64-linux-gnu/libc.so.6".to_string()
            )]
        );
    }

    #[test]
    fn resolves_libc_and_finds_symbols() {
        let libc = resolve_library("libc").expect("libc present on this system");
        let off = symbol_offset(&libc, "memcpy@@GLIBC_2.14").unwrap();
        assert!(off > 0);
        let names = list_symbols(&libc, "getppi*").unwrap();
        assert!(names.iter().any(|n| n == "getppid"), "{names:?}");
        assert!(symbol_offset(&libc, "no_such_function_xyz").is_err());
    }
}
