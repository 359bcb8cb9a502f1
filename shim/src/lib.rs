//! runvm's containerd shim v2 (`containerd-shim-runvm-v2`): containerd's Task API for runvm
//! containers, driving `runvm_runtime::lifecycle` in process (no `runvm` per call).
//!
//! `ctr run --runtime io.containerd.runvm.v2 IMAGE ID` makes containerd run this binary.
//! Layout: `cli` (start/serve/delete roles), `task_api` (ttrpc Task service) over `service`
//! (tasks and their processes), `worker` (the single-threaded process that clones container
//! processes and reaps them, see there why), `stdio` (containerd's FIFOs), `events`,
//! `metrics`, `rootfs`, `wire` (shim/worker messages).

pub mod cli;
pub mod error;
pub mod events;
pub mod metrics;
pub mod process;
pub mod rootfs;
pub mod service;
pub mod stdio;
pub mod task_api;
pub mod wire;
pub mod worker;
