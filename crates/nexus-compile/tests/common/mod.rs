//! Kernel-run scaffolding shared by the integration tests that load what
//! the compiler produced: the skip rule, map creation and program loading.

use nexus_compile::{
    Artifact, CompileOptions, ProbeCatalog, ProgramSpec as CompiledProgram, compile_source,
};
use nexus_kernel::{Map, MapSpec, Program, ProgramSpec};

/// Compile `src`, panicking with the rendered diagnostics when it fails.
pub fn compile_with(src: &str, catalog: &dyn ProbeCatalog, opts: &CompileOptions) -> Artifact {
    compile_source(src, catalog, opts)
        .unwrap_or_else(|d| panic!("{}", nexus_lang::render_all(&d, "test", src)))
}

/// `Err(why)` when BPF maps cannot be created here.
pub fn kernel_available() -> Result<(), String> {
    let spec = MapSpec::new("probe", nexus_insn::MapType::Array, 4, 8, 1);
    Map::create(&spec).map(|_| ()).map_err(|e| e.to_string())
}

/// Skip the kernel test, or fail it under `BPFNEXUS_REQUIRE_KERNEL=1`.
pub fn skip_or_fail(why: &str) {
    if std::env::var("BPFNEXUS_REQUIRE_KERNEL").as_deref() == Ok("1") {
        panic!("kernel test required but skipped: {why}");
    }
    eprintln!("skipping kernel test: {why}");
}

/// Create every map of the artifact, in artifact order (the map indexes
/// the programs refer to).
pub fn create_maps(a: &Artifact) -> Vec<Map> {
    a.maps
        .iter()
        .map(|m| {
            let spec = MapSpec {
                name: m.name.clone(),
                map_type: m.kind.map_type(),
                key_size: m.key_size,
                value_size: m.value_size,
                max_entries: m.max_entries,
                flags: m.flags,
            };
            Map::create(&spec).unwrap_or_else(|e| panic!("map {}: {e}", m.name))
        })
        .collect()
}

/// Load one compiled program against `maps`, panicking with the verifier
/// log when the kernel refuses it.
pub fn load(p: &CompiledProgram, maps: &[Map]) -> Program {
    let spec = ProgramSpec::new(&p.name, p.prog_type.prog_type(), &p.insns);
    Program::load(&spec, maps)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", p.name, e.verifier_log().unwrap_or("")))
}
