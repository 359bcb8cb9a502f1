//! OCI bundle, config and state handling for runvm.
//!
//! Everything here is pure data handling (no namespaces, no mounts): loading and validating a
//! bundle's `config.json`, validating container ids, and the `state.json` runvm keeps per
//! container. Errors name the offending field or file, because that is what a user fixes.

mod config;
mod error;
mod id;
mod isolation;
mod state;
mod validate;

pub use config::{load_bundle, load_spec, parse_and_validate, parse_process, Bundle, CONFIG_FILE};
pub use error::OciError;
pub use id::validate_id;
pub use isolation::{IsolationClass, ISOLATION_ANNOTATION};
pub use oci_spec;
pub use state::{ContainerState, HookSet, Status};
pub use validate::{validate_spec, SUPPORTED_OCI_MAJOR};
