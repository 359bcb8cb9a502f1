//! runvm's container engine: everything the `runvm` CLI does, as a library the shim can call.
//!
//! Processes (named the same in code and docs):
//! - **cli**: the `runvm` process a user or client starts; it validates, sets up cgroups and state,
//!   and spawns init.
//! - **init**: the container's first process before it `execve`s the user's program; it finishes
//!   the namespaces, rootfs, credentials and seccomp from inside.

pub mod cgroups;
pub mod check;
pub mod cli;
pub mod container;
pub mod engine;
pub mod fault;
pub mod features;
pub mod hooks;
pub mod host;
pub mod identity;
pub mod isolation;
pub mod lifecycle;
pub mod logging;
pub mod namespaces;
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod selfexe;
pub mod sysctl;
pub mod vm;
