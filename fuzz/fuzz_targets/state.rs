//! Arbitrary bytes as a container's state.json. Loading must fail cleanly on damage, and any
//! state it accepts must survive save and load unchanged (runvm rewrites it at every transition).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use runvm_oci::ContainerState;

fuzz_target!(|data: &[u8]| {
    let file = Path::new("state.json");
    let Ok(state) = ContainerState::from_slice(data, file) else {
        return;
    };
    let saved = serde_json::to_vec(&state).expect("a loaded state serializes");
    let reloaded = ContainerState::from_slice(&saved, file).expect("a saved state reloads");
    assert_eq!(state, reloaded);
    // What `state` prints and hooks read must be buildable for every status.
    let _ = state.to_oci(state.status);
});
