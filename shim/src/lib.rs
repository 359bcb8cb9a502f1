//! runvm's containerd shim v2 (`containerd-shim-runvm-v2`): not written yet.
//!
//! It will implement containerd's task API on the containerd-shim crates and drive container
//! mode through `runvm_runtime::lifecycle` directly (no `runvm` process per call); VM sandboxes
//! will plug in here too. Until then, containerd can use runvm through its runc shim
//! (`--runc-binary`), since runvm's CLI follows runc's.
