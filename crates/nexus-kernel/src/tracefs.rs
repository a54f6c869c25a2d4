//! tracefs: finding (or mounting) it, reading a tracepoint's `id` and
//! `format`, and listing tracepoints.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where tracefs normally lives, and where we mount it when it is missing.
pub const TRACEFS: &str = "/sys/kernel/tracing";
/// The legacy location under debugfs.
pub const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted at {TRACEFS} or {DEBUGFS_TRACING}{mount_note}",
        mount_note = .mount_error.as_ref().map(|e| format!(" and mounting it failed: {e}")).unwrap_or_default()
    )]
    NotMounted { mount_error: Option<String> },
    #[error("tracepoint {category}:{name} does not exist (no {path})")]
    NoTracepoint {
        category: String,
        name: String,
        path: String,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: cannot parse {what}: {line:?}")]
    Parse {
        path: String,
        what: &'static str,
        line: String,
    },
}

fn is_tracefs(dir: &Path) -> bool {
    dir.join("events").is_dir()
}

/// The tracefs root, mounting tracefs at [`TRACEFS`] when it is missing and
/// we are allowed to. The answer is cached once found.
pub fn root() -> Result<PathBuf, TracefsError> {
    static FOUND: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut found = FOUND
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(p) = found.as_ref() {
        return Ok(p.clone());
    }
    let p = find_or_mount()?;
    *found = Some(p.clone());
    Ok(p)
}

/// The tracefs root if it is mounted, without mounting anything.
#[must_use]
pub fn mounted_root() -> Option<PathBuf> {
    [TRACEFS, DEBUGFS_TRACING]
        .iter()
        .map(PathBuf::from)
        .find(|p| is_tracefs(p))
}

fn find_or_mount() -> Result<PathBuf, TracefsError> {
    if let Some(p) = mounted_root() {
        return Ok(p);
    }
    let err = mount_tracefs().err().map(|e| e.to_string());
    if is_tracefs(Path::new(TRACEFS)) {
        return Ok(PathBuf::from(TRACEFS));
    }
    Err(TracefsError::NotMounted { mount_error: err })
}

fn mount_tracefs() -> io::Result<()> {
    let src = c"nodev";
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: all pointers are NUL-terminated static strings; data is NULL.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One field of a tracepoint's record, from its `format` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracepointField {
    pub name: String,
    /// The C declaration without the name, e.g. `const char *` or `char[16]`.
    pub c_type: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
    /// True for `common_*` fields shared by every event.
    pub common: bool,
}

/// A tracepoint's id and record layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracepointFormat {
    pub category: String,
    pub name: String,
    pub id: u32,
    pub fields: Vec<TracepointField>,
}

impl TracepointFormat {
    /// The non-common field called `name`.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&TracepointField> {
        self.fields.iter().find(|f| f.name == name)
    }
}

fn read(path: &Path) -> Result<String, TracefsError> {
    std::fs::read_to_string(path).map_err(|source| TracefsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Read `events/CAT/NAME/{id,format}`.
pub fn tracepoint(category: &str, name: &str) -> Result<TracepointFormat, TracefsError> {
    let dir = root()?.join("events").join(category).join(name);
    if category.contains('/') || name.contains('/') || !dir.is_dir() {
        return Err(TracefsError::NoTracepoint {
            category: category.to_string(),
            name: name.to_string(),
            path: dir.display().to_string(),
        });
    }
    let id_path = dir.join("id");
    let id_text = read(&id_path)?;
    let id = id_text.trim().parse().map_err(|_| TracefsError::Parse {
        path: id_path.display().to_string(),
        what: "tracepoint id",
        line: id_text.trim().to_string(),
    })?;
    let fmt_path = dir.join("format");
    let fields = parse_format(&read(&fmt_path)?).map_err(|line| TracefsError::Parse {
        path: fmt_path.display().to_string(),
        what: "field line",
        line,
    })?;
    Ok(TracepointFormat {
        category: category.to_string(),
        name: name.to_string(),
        id,
        fields,
    })
}

/// Parse the `field:` lines of a tracepoint `format` file. On error returns
/// the line that could not be parsed.
pub fn parse_format(text: &str) -> Result<Vec<TracepointField>, String> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with("field:") {
            continue;
        }
        let mut decl = None;
        let (mut offset, mut size, mut signed) = (None, None, None);
        for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once(':') else {
                continue;
            };
            match k.trim() {
                "field" => decl = Some(v.trim()),
                "offset" => offset = v.trim().parse().ok(),
                "size" => size = v.trim().parse().ok(),
                "signed" => signed = v.trim().parse::<u8>().ok(),
                _ => {}
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            return Err(line.to_string());
        };
        let (c_type, name) = split_decl(decl).ok_or_else(|| line.to_string())?;
        fields.push(TracepointField {
            common: name.starts_with("common_"),
            name,
            c_type,
            offset,
            size,
            signed: signed.unwrap_or(0) != 0,
        });
    }
    Ok(fields)
}

/// Split `const char * filename` / `char comm[16]` / `__data_loc char[] name`
/// into (type text, name).
fn split_decl(decl: &str) -> Option<(String, String)> {
    // Only a trailing `[N]` belongs to the name (`char comm[16]`); in
    // `__data_loc char[] name` the brackets are part of the type.
    let (decl, array) = match decl.rfind('[') {
        Some(i) if decl.ends_with(']') => (decl[..i].trim_end(), &decl[i..]),
        _ => (decl, ""),
    };
    let split = decl.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    let name = decl[split + 1..].to_string();
    let ty = decl[..=split].trim();
    if name.is_empty() || ty.is_empty() {
        return None;
    }
    Some((format!("{ty}{array}"), name))
}

/// Shell-style glob match supporting `*` and `?`.
#[must_use]
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Every tracepoint `(category, name)` matching the globs, sorted.
pub fn list_tracepoints(
    category_glob: &str,
    name_glob: &str,
) -> Result<Vec<(String, String)>, TracefsError> {
    let events = root()?.join("events");
    let literal = |g: &str| !g.contains(['*', '?']);
    if literal(category_glob) && literal(name_glob) {
        let exists = events.join(category_glob).join(name_glob).is_dir();
        return Ok(
            if exists && !category_glob.contains('/') && !name_glob.contains('/') {
                vec![(category_glob.to_string(), name_glob.to_string())]
            } else {
                Vec::new()
            },
        );
    }
    let rd = |p: &Path| {
        std::fs::read_dir(p).map_err(|source| TracefsError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let mut out = Vec::new();
    for cat in rd(&events)?.flatten() {
        let cat_name = cat.file_name().to_string_lossy().into_owned();
        if !cat.path().is_dir() || !glob_match(category_glob, &cat_name) {
            continue;
        }
        for ev in rd(&cat.path())?.flatten() {
            let ev_name = ev.file_name().to_string_lossy().into_owned();
            if ev.path().is_dir() && glob_match(name_glob, &ev_name) {
                out.push((cat_name.clone(), ev_name));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "name: sys_enter_openat
ID: 700
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:char comm[16];\toffset:32;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] name;\toffset:48;\tsize:4;\tsigned:0;

print fmt: \"dfd: 0x%08lx\", ((unsigned long)(REC->dfd))
";

    #[test]
    fn parses_fields() {
        let f = parse_format(FORMAT).unwrap();
        assert_eq!(f.len(), 6);
        assert_eq!(
            (f[0].name.as_str(), f[0].common, f[0].size),
            ("common_type", true, 2)
        );
        assert!(f[1].signed);
        assert_eq!(
            (f[3].name.as_str(), f[3].c_type.as_str(), f[3].offset),
            ("filename", "const char *", 24)
        );
        assert_eq!(
            (f[4].name.as_str(), f[4].c_type.as_str()),
            ("comm", "char[16]")
        );
        assert_eq!(
            (f[5].name.as_str(), f[5].c_type.as_str()),
            ("name", "__data_loc char[]")
        );
        assert!(parse_format("\tfield:int x;\toffset:zz;\tsize:4;").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("sys_enter_*", "sys_enter_write"));
        assert!(glob_match("*", ""));
        assert!(glob_match("s?s*w*e", "sys_enter_write"));
        assert!(!glob_match("sys_exit_*", "sys_enter_write"));
        assert!(glob_match("*_write", "sys_enter_write"));
        assert!(!glob_match("*_read", "sys_enter_write"));
    }
}
