//! Print a stage of a program compiled against the sample catalog:
//! `cargo run -p nexus-compile --example emit -- ir 'BEGIN { printf("hi\n"); }'`.

use nexus_compile::{CompileOptions, MemoryCatalog, Stage, emit_stage};

fn main() {
    let mut args = std::env::args().skip(1);
    let stage = match args.next().as_deref() {
        Some("ast") => Stage::Ast,
        Some("ir") => Stage::Ir,
        _ => Stage::Asm,
    };
    let src = args.next().unwrap_or_default();
    let catalog = MemoryCatalog::sample();
    match emit_stage(&src, &catalog, &CompileOptions::default(), stage) {
        Ok(text) => print!("{text}"),
        Err(diags) => eprint!("{}", nexus_lang::render_all(&diags, "stdin", &src)),
    }
}
