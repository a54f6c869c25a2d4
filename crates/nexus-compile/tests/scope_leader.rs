//! The `-c` scope check passes the command itself without a scope-map
//! lookup: the exec program records its tgid in `config.scope_leader`,
//! the exit program clears it. Kernel test (`BPFNEXUS_REQUIRE_KERNEL=1`
//! makes a skip a failure).

mod common;

use common::{compile_with, create_maps, kernel_available, load, skip_or_fail};
use nexus_compile::{
    AttachSpec, CONFIG_CPID, CONFIG_SCOPE_ENABLED, CONFIG_SCOPE_LEADER, CompileOptions, MapRole,
};
use nexus_kernel::{KernelCatalog, Map, UpdateFlags};
use std::io::Write;
use std::time::Duration;

fn config_word(map: &Map, off: u32) -> u64 {
    let v = map.lookup(&0u32.to_le_bytes()).unwrap().unwrap();
    u64::from_le_bytes(v[off as usize..off as usize + 8].try_into().unwrap())
}

fn set_config_word(map: &Map, off: u32, value: u64) {
    let key = 0u32.to_le_bytes();
    let mut v = map.lookup(&key).unwrap().unwrap();
    v[off as usize..off as usize + 8].copy_from_slice(&value.to_le_bytes());
    map.update(&key, &v, UpdateFlags::Any).unwrap();
}

/// Wait until `pid` sleeps (blocked in `read`), or 2 s.
fn wait_sleeping(pid: u32) {
    let stat = format!("/proc/{pid}/stat");
    for _ in 0..200 {
        let s = std::fs::read_to_string(&stat).unwrap_or_default();
        if s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('S'))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kernel_scope_passes_the_command_through_the_leader_word() {
    if let Err(why) = kernel_available() {
        return skip_or_fail(&why);
    }
    let src = "tracepoint:syscalls:sys_enter_clock_nanosleep { @ = count(); }";
    let opts = CompileOptions {
        scope: true,
        ..CompileOptions::default()
    };
    let a = compile_with(src, &KernelCatalog, &opts);
    let maps = create_maps(&a);
    let mut links = Vec::new();
    for p in &a.programs {
        let prog = load(p, &maps);
        for at in &p.attach {
            let target = match at {
                AttachSpec::RawTracepoint { event } => nexus_kernel::AttachTarget::RawTracepoint {
                    name: event.clone(),
                },
                AttachSpec::Tracepoint { category, event } => {
                    nexus_kernel::AttachTarget::Tracepoint {
                        category: category.clone(),
                        name: event.clone(),
                    }
                }
                other => panic!("unexpected attach point {other:?}"),
            };
            links.push(nexus_kernel::attach(&prog, &target).unwrap());
        }
    }
    let config = &maps[a.map_with_role(&MapRole::Config).unwrap()];
    let scope = &maps[a.map_with_role(&MapRole::Scope).unwrap()];
    let count = a
        .maps
        .iter()
        .position(|m| matches!(&m.role, MapRole::User(u) if u.name == "@"))
        .unwrap();
    // Two execs in the same tgid: the command, held on stdin twice.
    let mut cmd = std::process::Command::new("sh")
        .args(["-c", r#"read x; exec sh -c "read y; exec sleep 0.01""#])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cpid = cmd.id();
    wait_sleeping(cpid);
    set_config_word(config, CONFIG_CPID, u64::from(cpid));
    set_config_word(config, CONFIG_SCOPE_ENABLED, 1);
    assert_eq!(config_word(config, CONFIG_SCOPE_LEADER), 0);
    let mut stdin = cmd.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    for _ in 0..200 {
        if config_word(config, CONFIG_SCOPE_LEADER) == u64::from(cpid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        config_word(config, CONFIG_SCOPE_LEADER),
        u64::from(cpid),
        "the command's exec did not record it"
    );
    std::thread::sleep(Duration::from_millis(20));
    wait_sleeping(cpid);
    // Out of the scope map: only the leader word admits it now.
    let key = (cpid >> 6).to_le_bytes();
    let word = u64::from_le_bytes(
        scope.lookup(&key).unwrap().unwrap()[..8]
            .try_into()
            .unwrap(),
    );
    assert_ne!(
        word & 1 << (cpid & 63),
        0,
        "the command's exec did not join"
    );
    scope
        .update(
            &key,
            &(word & !(1 << (cpid & 63))).to_le_bytes(),
            UpdateFlags::Any,
        )
        .unwrap();
    stdin.write_all(b"go\n").unwrap();
    assert!(cmd.wait().unwrap().success());
    drop(links);
    let counted: u64 = maps[count]
        .lookup_percpu(&0u32.to_le_bytes())
        .unwrap()
        .unwrap()
        .iter()
        .map(|v| u64::from_le_bytes(v[..8].try_into().unwrap()))
        .sum();
    assert!(counted >= 1, "the command's sleep was not counted");
    assert_eq!(
        config_word(config, CONFIG_SCOPE_LEADER),
        0,
        "the command's exit did not clear the leader"
    );
}
