//! Probe facts the compiler needs from the running system, behind a trait so
//! the compiler stays free of I/O: `nexus-kernel` implements it over tracefs,
//! ELF and BTF; [`MemoryCatalog`] implements it from data for tests.

use std::collections::BTreeMap;

/// A failure reading probe facts (the kernel layer's message, verbatim).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CatalogError(pub String);

/// What a kernel struct member holds, from BTF (typedefs and qualifiers
/// followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelType {
    /// An integer or enum of `size` bytes.
    Int {
        /// Bytes.
        size: u32,
        /// Signedness.
        signed: bool,
    },
    /// A pointer, to the named struct or union when it points to one.
    Pointer {
        /// Struct/union name (`None` for `void *`, `int *`, ...).
        pointee: Option<String>,
    },
    /// `char[len]`: a string.
    CharArray {
        /// Bytes.
        len: u32,
    },
    /// An embedded struct or union.
    Composite {
        /// Its name, when it has one.
        name: Option<String>,
    },
    /// Anything else (other arrays, floats, function pointers).
    Other,
}

/// A kernel struct member: where it is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelMember {
    /// Byte offset in the struct.
    pub offset: u32,
    /// Its type.
    pub ty: KernelType,
}

/// One field of a tracepoint's `format` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracepointField {
    /// Field name (`filename`, `count`, ...).
    pub name: String,
    /// The C type as `format` prints it, without the name:
    /// `const char *`, `char[16]`, `unsigned int`, `size_t`.
    pub c_type: String,
    /// Byte offset in the tracepoint context.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// `signed:1` in `format`.
    pub signed: bool,
}

impl TracepointField {
    /// True for pointer fields (`char *`, `const struct x *`).
    pub fn is_pointer(&self) -> bool {
        self.c_type.contains('*')
    }

    /// True for `char`-based fields (strings or string pointers).
    pub fn is_char(&self) -> bool {
        let base = self.c_type.split(['[', '*']).next().unwrap_or("");
        base.split_whitespace().any(|w| w == "char")
    }

    /// `Some(n)` for `T[n]` array fields.
    pub fn array_len(&self) -> Option<u32> {
        let open = self.c_type.find('[')?;
        let close = self.c_type[open..].find(']')? + open;
        self.c_type[open + 1..close].trim().parse().ok()
    }

    /// True for `__data_loc` fields: a `u32` whose low 16 bits are the
    /// offset of the data in the context and high 16 bits its length.
    pub fn is_data_loc(&self) -> bool {
        self.c_type.starts_with("__data_loc")
    }

    /// True for the four common fields every tracepoint starts with.
    pub fn is_common(&self) -> bool {
        self.name.starts_with("common_")
    }
}

/// A kernel function argument from BTF (for fentry/fexit `args.NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtfArg {
    /// Parameter name.
    pub name: String,
    /// Size in bytes of its (integer or pointer) type.
    pub size: u32,
    /// Signed integer.
    pub signed: bool,
    /// Pointer type.
    pub pointer: bool,
}

/// Everything the compiler asks about the system. Patterns are shell globs
/// (`*` and `?`); a name without wildcards is an exact match.
pub trait ProbeCatalog {
    /// `(category, event)` of every tracepoint matching both patterns.
    fn tracepoints(
        &self,
        category: &str,
        event: &str,
    ) -> Result<Vec<(String, String)>, CatalogError>;

    /// The fields of a tracepoint's `format`, common fields included;
    /// `Ok(None)` when it does not exist.
    fn tracepoint_fields(
        &self,
        category: &str,
        event: &str,
    ) -> Result<Option<Vec<TracepointField>>, CatalogError>;

    /// The absolute path of a uprobe target written as a path or as a
    /// library name (`libc`, `libc.so.6`), resolved as bpftrace does
    /// (ld.so cache, then the usual library directories); `Ok(None)` when
    /// it cannot be found.
    fn resolve_binary(&self, binary: &str) -> Result<Option<String>, CatalogError>;

    /// Function symbols of the binary at `path` matching `pattern`.
    fn user_functions(&self, path: &str, pattern: &str) -> Result<Vec<String>, CatalogError>;

    /// Kernel functions matching `pattern` that kprobes/fentry can attach to.
    fn kernel_functions(&self, pattern: &str) -> Result<Vec<String>, CatalogError>;

    /// True when the kernel has kprobes (`CONFIG_KPROBES`).
    fn has_kprobes(&self) -> bool;

    /// The BTF parameters of a kernel function, `Ok(None)` when unknown.
    fn kernel_function_args(&self, function: &str) -> Result<Option<Vec<BtfArg>>, CatalogError>;

    /// The x86_64 syscall number of `name` (`read`, `openat`), used to lower
    /// `syscalls:sys_enter_X` onto the `sys_enter` raw tracepoint.
    fn syscall_number(&self, name: &str) -> Option<u32>;

    /// `(byte offset, size in bytes)` of member `member` of kernel struct
    /// `strukt` (from BTF; members of anonymous nested structs included,
    /// typedefs followed). `Ok(None)` when the struct or member is unknown,
    /// the member is a bitfield, or the system has no BTF: callers fall
    /// back to what needs no struct layout.
    fn struct_member(
        &self,
        strukt: &str,
        member: &str,
    ) -> Result<Option<(u32, u32)>, CatalogError> {
        let _ = (strukt, member);
        Ok(None)
    }

    /// Member `member` of kernel struct or union `strukt` with its type
    /// (from BTF, like [`ProbeCatalog::struct_member`]): what `->` and `.`
    /// on kernel pointers read. `Ok(None)` when the struct or member is
    /// unknown, the member is a bitfield, or there is no BTF.
    fn struct_member_type(
        &self,
        strukt: &str,
        member: &str,
    ) -> Result<Option<KernelMember>, CatalogError> {
        let _ = (strukt, member);
        Ok(None)
    }
}

/// Shell-glob match of `name` against `pattern` (`*` any run, `?` one char).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with one backtrack point for the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// An in-memory catalog, filled by hand (tests, the VM, documentation).
#[derive(Debug, Clone, Default)]
pub struct MemoryCatalog {
    /// `(category, event)` → fields.
    pub tracepoints: BTreeMap<(String, String), Vec<TracepointField>>,
    /// Library name or path → absolute path.
    pub binaries: BTreeMap<String, String>,
    /// Absolute path → function symbols.
    pub user_symbols: BTreeMap<String, Vec<String>>,
    /// Kernel function → BTF parameters.
    pub kernel_functions: BTreeMap<String, Vec<BtfArg>>,
    /// Whether kprobes exist.
    pub kprobes: bool,
    /// Syscall name → number.
    pub syscalls: BTreeMap<String, u32>,
    /// `(struct, member)` → `(byte offset, size)`.
    pub struct_members: BTreeMap<(String, String), (u32, u32)>,
    /// `(struct, member)` → the member with its type.
    pub member_types: BTreeMap<(String, String), KernelMember>,
}

impl MemoryCatalog {
    /// The four common fields every tracepoint starts with.
    pub fn common_fields() -> Vec<TracepointField> {
        vec![
            tp_field("common_type", "unsigned short", 0, 2, false),
            tp_field("common_flags", "unsigned char", 2, 1, false),
            tp_field("common_preempt_count", "unsigned char", 3, 1, false),
            tp_field("common_pid", "int", 4, 4, true),
        ]
    }

    /// Add a tracepoint with the common fields plus `fields`.
    pub fn add_tracepoint(&mut self, category: &str, event: &str, fields: Vec<TracepointField>) {
        let mut all = Self::common_fields();
        all.extend(fields);
        self.tracepoints
            .insert((category.to_string(), event.to_string()), all);
    }

    /// A catalog resembling an x86_64 Linux system with a few well-known
    /// tracepoints, libc, and a few kernel functions (no kprobes, like the
    /// development machines).
    pub fn sample() -> MemoryCatalog {
        let mut c = MemoryCatalog::default();
        for &(category, event, fields) in SAMPLE_TRACEPOINTS {
            // Every syscalls:* event starts with the syscall number.
            let syscall_nr = (category == "syscalls").then_some(SYSCALL_NR);
            let fields = syscall_nr
                .iter()
                .chain(fields)
                .map(|&(name, c_type, offset, size, signed)| {
                    tp_field(name, c_type, offset, size, signed)
                })
                .collect();
            c.add_tracepoint(category, event, fields);
        }
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6".to_string();
        for name in ["libc", "libc.so.6", libc.as_str()] {
            c.binaries.insert(name.to_string(), libc.clone());
        }
        c.binaries.insert("/bin/bash".into(), "/bin/bash".into());
        c.user_symbols.insert(
            libc,
            [
                "malloc", "free", "calloc", "realloc", "open", "openat", "read",
            ]
            .map(String::from)
            .to_vec(),
        );
        c.user_symbols
            .insert("/bin/bash".into(), vec!["readline".into(), "main".into()]);
        let arg = |name: &str, size, signed, pointer| BtfArg {
            name: name.into(),
            size,
            signed,
            pointer,
        };
        c.kernel_functions.insert(
            "do_sys_openat2".into(),
            vec![
                arg("dfd", 4, true, false),
                arg("filename", 8, false, true),
                arg("how", 8, false, true),
            ],
        );
        c.kernel_functions.insert(
            "vfs_read".into(),
            vec![
                arg("file", 8, false, true),
                arg("buf", 8, false, true),
                arg("count", 8, false, false),
                arg("pos", 8, false, true),
            ],
        );
        for (n, nr) in [("read", 0), ("write", 1), ("openat", 257)] {
            c.syscalls.insert(n.into(), nr);
        }
        // Illustrative offsets: real ones come from BTF and differ between
        // kernel builds.
        for (member, off) in [("pid", 2464), ("tgid", 2468)] {
            c.struct_members
                .insert(("task_struct".into(), member.into()), (off, 4));
        }
        let int = KernelType::Int {
            size: 4,
            signed: true,
        };
        let task = || KernelType::Pointer {
            pointee: Some("task_struct".into()),
        };
        for (member, offset, ty) in [
            ("pid", 2464, int.clone()),
            ("tgid", 2468, int),
            ("real_parent", 2480, task()),
            ("parent", 2488, task()),
            ("comm", 3032, KernelType::CharArray { len: 16 }),
            (
                "flags",
                44,
                KernelType::Int {
                    size: 4,
                    signed: false,
                },
            ),
        ] {
            c.member_types.insert(
                ("task_struct".into(), member.into()),
                KernelMember { offset, ty },
            );
        }
        c
    }
}

/// A tracepoint field as (name, C type, offset, size, signed).
type SampleField = (&'static str, &'static str, u32, u32, bool);

const SYSCALL_NR: SampleField = ("__syscall_nr", "int", 8, 4, true);

/// The tracepoints of [`MemoryCatalog::sample`] beyond the common fields
/// (and, for syscalls:*, beyond [`SYSCALL_NR`]).
const SAMPLE_TRACEPOINTS: &[(&str, &str, &[SampleField])] = &[
    (
        "syscalls",
        "sys_enter_openat",
        &[
            ("dfd", "int", 16, 8, false),
            ("filename", "const char *", 24, 8, false),
            ("flags", "int", 32, 8, false),
            ("mode", "umode_t", 40, 8, false),
        ],
    ),
    (
        "syscalls",
        "sys_exit_openat",
        &[("ret", "long", 16, 8, true)],
    ),
    (
        "syscalls",
        "sys_enter_read",
        &[
            ("fd", "unsigned int", 16, 8, false),
            ("buf", "char *", 24, 8, false),
            ("count", "size_t", 32, 8, false),
        ],
    ),
    ("syscalls", "sys_exit_read", &[("ret", "long", 16, 8, true)]),
    (
        "syscalls",
        "sys_enter_write",
        &[
            ("fd", "unsigned int", 16, 8, false),
            ("buf", "const char *", 24, 8, false),
            ("count", "size_t", 32, 8, false),
        ],
    ),
    (
        "raw_syscalls",
        "sys_enter",
        &[
            ("id", "long", 8, 8, true),
            ("args", "unsigned long[6]", 16, 48, false),
        ],
    ),
    (
        "sched",
        "sched_process_fork",
        &[
            ("parent_comm", "char[16]", 8, 16, false),
            ("parent_pid", "pid_t", 24, 4, true),
            ("child_comm", "char[16]", 28, 16, false),
            ("child_pid", "pid_t", 44, 4, true),
        ],
    ),
    (
        "sched",
        "sched_process_exit",
        &[
            ("comm", "char[16]", 8, 16, false),
            ("pid", "pid_t", 24, 4, true),
            ("prio", "int", 28, 4, true),
        ],
    ),
    (
        "sched",
        "sched_process_exec",
        &[
            ("filename", "__data_loc char[]", 8, 4, false),
            ("pid", "pid_t", 12, 4, true),
            ("old_pid", "pid_t", 16, 4, true),
        ],
    ),
    (
        "sched",
        "sched_switch",
        &[
            ("prev_comm", "char[16]", 8, 16, false),
            ("prev_pid", "pid_t", 24, 4, true),
            ("prev_prio", "int", 28, 4, true),
            ("prev_state", "long", 32, 8, true),
            ("next_comm", "char[16]", 40, 16, false),
            ("next_pid", "pid_t", 56, 4, true),
            ("next_prio", "int", 60, 4, true),
        ],
    ),
];

/// A tracepoint field (helper for building catalogs by hand).
pub fn tp_field(name: &str, c_type: &str, offset: u32, size: u32, signed: bool) -> TracepointField {
    TracepointField {
        name: name.to_string(),
        c_type: c_type.to_string(),
        offset,
        size,
        signed,
    }
}

impl ProbeCatalog for MemoryCatalog {
    fn tracepoints(
        &self,
        category: &str,
        event: &str,
    ) -> Result<Vec<(String, String)>, CatalogError> {
        Ok(self
            .tracepoints
            .keys()
            .filter(|(c, e)| glob_match(category, c) && glob_match(event, e))
            .cloned()
            .collect())
    }

    fn tracepoint_fields(
        &self,
        category: &str,
        event: &str,
    ) -> Result<Option<Vec<TracepointField>>, CatalogError> {
        Ok(self
            .tracepoints
            .get(&(category.to_string(), event.to_string()))
            .cloned())
    }

    fn resolve_binary(&self, binary: &str) -> Result<Option<String>, CatalogError> {
        Ok(self.binaries.get(binary).cloned())
    }

    fn user_functions(&self, path: &str, pattern: &str) -> Result<Vec<String>, CatalogError> {
        Ok(self
            .user_symbols
            .get(path)
            .map(|syms| {
                syms.iter()
                    .filter(|s| glob_match(pattern, s))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    fn kernel_functions(&self, pattern: &str) -> Result<Vec<String>, CatalogError> {
        Ok(self
            .kernel_functions
            .keys()
            .filter(|f| glob_match(pattern, f))
            .cloned()
            .collect())
    }

    fn has_kprobes(&self) -> bool {
        self.kprobes
    }

    fn kernel_function_args(&self, function: &str) -> Result<Option<Vec<BtfArg>>, CatalogError> {
        Ok(self.kernel_functions.get(function).cloned())
    }

    fn syscall_number(&self, name: &str) -> Option<u32> {
        self.syscalls.get(name).copied()
    }

    fn struct_member(
        &self,
        strukt: &str,
        member: &str,
    ) -> Result<Option<(u32, u32)>, CatalogError> {
        Ok(self
            .struct_members
            .get(&(strukt.to_string(), member.to_string()))
            .copied())
    }

    fn struct_member_type(
        &self,
        strukt: &str,
        member: &str,
    ) -> Result<Option<KernelMember>, CatalogError> {
        Ok(self
            .member_types
            .get(&(strukt.to_string(), member.to_string()))
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("sys_enter_*", "sys_enter_read"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*read*", "vfs_read_iter"));
        assert!(!glob_match("sys_enter_*", "sys_exit_read"));
        assert!(!glob_match("abc", "abcd"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }

    #[test]
    fn field_shapes() {
        let f = tp_field("filename", "const char *", 24, 8, false);
        assert!(f.is_pointer() && f.is_char() && f.array_len().is_none());
        let c = tp_field("comm", "char[16]", 8, 16, false);
        assert!(!c.is_pointer() && c.is_char());
        assert_eq!(c.array_len(), Some(16));
        assert!(!tp_field("x", "unsigned int", 0, 4, false).is_char());
    }

    #[test]
    fn sample_catalog_expands_wildcards() {
        let c = MemoryCatalog::sample();
        let tps = c.tracepoints("syscalls", "sys_enter_*").unwrap();
        assert_eq!(tps.len(), 3);
        assert_eq!(
            c.user_functions("/usr/lib/x86_64-linux-gnu/libc.so.6", "*alloc")
                .unwrap(),
            vec!["malloc", "calloc", "realloc"]
        );
    }
}
