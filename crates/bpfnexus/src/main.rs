//! The `bpfnexus` command line.

fn main() {
    println!("bpfnexus {}", env!("CARGO_PKG_VERSION"));
}
