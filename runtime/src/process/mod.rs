//! Starting a container's init: the cli side (`launch`) and the init side (`init`), which talk
//! over a socketpair (`channel`). init is a clone of the cli (no re-exec): it already holds the
//! validated config and the prepared seccomp program, so it only applies them.

pub mod channel;
mod clone;
pub mod console;
pub mod credentials;
pub mod exec;
pub mod init;
pub mod join;
pub mod launch;
mod stdio;

pub use clone::{clone3, Forked};
