//! Shared helpers for the runvm integration suite.
//!
//! The suite drives a runc-compatible runtime binary (runvm, or runc itself when
//! `RUNVM_BIN` points at it) against throw-away busybox bundles, and checks what
//! really happened on the host: processes, namespaces, mounts, cgroups.
//!
//! Run: `RUNVM_BIN=/abs/path cargo test -p runvm-tests -- --test-threads=2`
//! (without `RUNVM_BIN`, the workspace's target/{debug,release}/runvm).
//!
//! Test shape: `if !require_root() { return; }`, then declare the
//! [`BusyboxBundle`] *before* the [`Runtime`], so the runtime's drop guard
//! force-deletes the container before the bundle directory is removed.

mod binary;
mod bundle;
mod ids;
mod leftovers;
mod output;
mod runtime;

pub use binary::{is_runvm, require_root, runtime_bin};
pub use bundle::{default_config, BusyboxBundle, DEFAULT_CAPS};
pub use ids::unique_id;
pub use leftovers::{assert_no_leftovers, cgroup_dirs, proc_in_cgroup};
pub use output::{assert_failure, assert_success, stderr_of, stdout_of};
pub use runtime::Runtime;
