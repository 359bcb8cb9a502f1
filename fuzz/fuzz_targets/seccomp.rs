//! Arbitrary bytes as a `linux.seccomp` profile, compiled to BPF. Compile errors are fine;
//! panics are not, and neither is a filter the kernel would refuse at install time (compile
//! runs at `create` so that every config error shows there, not in the container's init).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::LinuxSeccomp;

/// BPF_MAXINSNS: the kernel refuses a longer classic BPF program.
const MAX_INSNS: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Ok(profile) = serde_json::from_slice::<LinuxSeccomp>(data) else {
        return;
    };
    match runvm_runtime::seccomp::compile(&profile) {
        Ok(compiled) => {
            for (i, filter) in compiled.filters().iter().enumerate() {
                assert!(
                    !filter.is_empty() && filter.len() <= MAX_INSNS,
                    "filter {i} has {} instructions",
                    filter.len()
                );
            }
        }
        Err(err) => assert!(err.to_string().starts_with("linux.seccomp"), "{err}"),
    }
});
