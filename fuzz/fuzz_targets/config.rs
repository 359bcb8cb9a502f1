//! Arbitrary bytes as a bundle's config.json: parsing and validation must return an error for
//! anything they do not accept, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = Path::new("config.json");
    if let Err(err) = runvm_oci::parse_and_validate(data, file) {
        // Formatting the error walks every field it names; that must not panic either.
        let message = err.to_string();
        assert!(!message.is_empty());
    }
});
