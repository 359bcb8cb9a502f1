//! containerd-shim-runvm-v2: see the `runvm_shim` crate.

fn main() {
    std::process::exit(runvm_shim::cli::main());
}
