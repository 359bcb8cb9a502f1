//! Per-container bookkeeping: the state directory, its lock and the live status.

mod status;
mod store;

pub use status::{live_status, proc_start_time};
pub use store::{ContainerDir, Store, StoreError};
