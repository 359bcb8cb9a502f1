//! Arbitrary bytes as a bundle's config.json: parsing and validation must return an error for
//! anything they do not accept, never panic. A config they accept must also be one the runtime
//! can act on: its rootfsPropagation is understood by the mount code, and its mount options and
//! seccomp profile go through their parsers without a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use runvm_runtime::rootfs::options;

fuzz_target!(|data: &[u8]| {
    let spec = match runvm_oci::parse_and_validate(data, Path::new("config.json")) {
        Ok(spec) => spec,
        Err(err) => {
            // Formatting the error walks every field it names; that must not panic either.
            assert!(!err.to_string().is_empty());
            return;
        }
    };
    if let Some(linux) = spec.linux() {
        if let Some(value) = linux.rootfs_propagation().as_deref() {
            assert!(
                value.is_empty() || options::propagation_option(value).is_some(),
                "validation accepted rootfsPropagation {value:?} that the mount code rejects"
            );
        }
        if let Some(seccomp) = linux.seccomp() {
            let _ = runvm_runtime::seccomp::compile(seccomp);
        }
    }
    for mount in spec.mounts().iter().flatten() {
        let _ = options::parse(mount.options().as_deref().unwrap_or_default());
    }
});
