//! Keyless aggregations live in a one-entry per-CPU array (an index
//! lookup, no hash and no insert on the hot path); keyed, plain, `sum` and
//! deleted keyless maps stay hashes. The kernel test runs the programs
//! with `BPF_PROG_TEST_RUN` (`BPFNEXUS_REQUIRE_KERNEL=1` makes a skip a
//! failure).

mod common;

use common::{compile_with, create_maps, kernel_available, load, skip_or_fail};
use nexus_compile::{
    Artifact, AttachSpec, CompileOptions, MapKind, MapRole, MapSpec as ArtifactMap, MemoryCatalog,
};
use nexus_kernel::{KernelCatalog, Map};

fn user_map<'a>(a: &'a Artifact, name: &str) -> (usize, &'a ArtifactMap) {
    a.maps
        .iter()
        .enumerate()
        .find(|(_, m)| matches!(&m.role, MapRole::User(u) if u.name == name))
        .unwrap_or_else(|| panic!("no map {name}"))
}

fn compile(src: &str) -> Artifact {
    compile_with(src, &MemoryCatalog::sample(), &CompileOptions::default())
}

#[test]
fn keyless_aggregations_are_one_slot_per_cpu_arrays() {
    let a = compile(
        r#"BEGIN { @c = count(); @s = sum(1); @mn = min(1); @mx = max(1); @a = avg(1);
                   @st = stats(1); @h = hist(1); @l = lhist(1, 0, 10, 1); }"#,
    );
    for name in ["@c", "@mn", "@mx", "@a", "@st", "@h", "@l"] {
        let (_, m) = user_map(&a, name);
        assert_eq!(
            (m.kind, m.key_size, m.max_entries),
            (MapKind::PercpuArray, 4, 1),
            "{name}"
        );
    }
    // `sum(0)` would leave the all-zero value that means "never ran".
    let (_, s) = user_map(&a, "@s");
    assert_eq!((s.kind, s.key_size), (MapKind::PercpuHash, 8));
    let a = compile("BEGIN { @c = count(); @h = hist(2); }");
    // Nothing is ever inserted: no zeros map.
    assert!(a.map_with_role(&MapRole::Zeros).is_none());
}

#[test]
fn keyed_plain_and_deleted_maps_stay_hashes() {
    let a = compile(
        r#"BEGIN { @k[1] = count(); @v = 5; @d = count(); delete(@d); @n = sum(2);
                   if (1) { delete(@n); } }"#,
    );
    let kinds: Vec<(MapKind, u32)> = ["@k", "@v", "@d", "@n"]
        .iter()
        .map(|n| {
            let (_, m) = user_map(&a, n);
            (m.kind, m.key_size)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (MapKind::PercpuHash, 8),
            (MapKind::Hash, 8),
            // A program can zero only its own CPU's array slot; a hash
            // delete drops every CPU's value.
            (MapKind::PercpuHash, 8),
            (MapKind::PercpuHash, 8),
        ]
    );
    assert!(a.map_with_role(&MapRole::Zeros).is_some());
}

/// Every CPU's slot of a keyless array map, as `u64` words.
fn slots(a: &Artifact, maps: &[Map], name: &str) -> Vec<Vec<u64>> {
    let (i, _) = user_map(a, name);
    maps[i]
        .lookup_percpu(&0u32.to_le_bytes())
        .unwrap()
        .unwrap_or_else(|| panic!("{name}: the array slot is missing"))
        .iter()
        .map(|v| {
            v.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect()
        })
        .collect()
}

#[test]
fn kernel_keyless_arrays_read_zero_until_updated() {
    if let Err(why) = kernel_available() {
        return skip_or_fail(&why);
    }
    // END never runs here: its maps stay untouched.
    let src = r#"BEGIN { @c = count(); @mn = min(-3); @a = avg(10); @h = hist(4); }
                 END { @never = count(); @nmin = max(1); @nh = hist(1); }"#;
    let a = compile_with(src, &KernelCatalog, &CompileOptions::default());
    let maps = create_maps(&a);
    for p in &a.programs {
        let prog = load(p, &maps);
        if p.attach == [AttachSpec::Begin] {
            for _ in 0..3 {
                prog.test_run(&[], None).unwrap();
            }
        }
    }
    let total = |name: &str, word: usize| -> u64 {
        slots(&a, &maps, name)
            .iter()
            .map(|s| s[word])
            .fold(0, u64::wrapping_add)
    };
    assert_eq!(total("@c", 0), 3);
    // min: [value, set] on the CPU that ran it.
    let mn: Vec<Vec<u64>> = slots(&a, &maps, "@mn")
        .into_iter()
        .filter(|s| s[1] != 0)
        .collect();
    assert!(
        !mn.is_empty() && mn.iter().all(|s| s[0] as i64 == -3),
        "{mn:?}"
    );
    assert_eq!((total("@a", 0), total("@a", 1)), (3, 30));
    // hist(4): slot k + 2 for [2^k, 2^(k+1)), so 4 is slot 4.
    assert_eq!(total("@h", 4), 3);
    // Untouched: present, all zeros on every CPU (min/max `set` included).
    for name in ["@never", "@nmin", "@nh"] {
        assert!(
            slots(&a, &maps, name).iter().flatten().all(|&w| w == 0),
            "{name}"
        );
    }
}
