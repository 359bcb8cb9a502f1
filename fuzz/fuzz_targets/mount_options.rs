//! A mount's `options` list, built mostly from the option names runvm knows (so the fuzzer
//! spends its time on combinations, not on guessing words) mixed with arbitrary strings.
//! Besides "never panics", checks what the rest of the rootfs code relies on:
//! - propagation never leaks into the mount(2) flags, it is kept per option in order;
//! - an attribute is never both set and cleared recursively;
//! - exactly the unknown strings are passed on as filesystem data, in order.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nix::mount::MsFlags;
use runvm_runtime::rootfs::options::{parse, propagation_option, KNOWN_OPTIONS};

/// Options `parse` understands that KNOWN_OPTIONS leaves out on purpose (see its comment).
const UNLISTED: &[&str] = &["idmap", "ridmap"];

#[derive(Arbitrary, Debug)]
enum Opt {
    Known(u8),
    Raw(String),
}

impl Opt {
    fn text(&self) -> String {
        match self {
            Opt::Known(i) => {
                let all = KNOWN_OPTIONS.len() + UNLISTED.len();
                let i = usize::from(*i) % all;
                KNOWN_OPTIONS
                    .get(i)
                    .copied()
                    .unwrap_or_else(|| UNLISTED[i - KNOWN_OPTIONS.len()])
                    .to_string()
            }
            Opt::Raw(s) => s.clone(),
        }
    }
}

fn is_option(name: &str) -> bool {
    KNOWN_OPTIONS.contains(&name) || UNLISTED.contains(&name)
}

const PROPAGATION: MsFlags = MsFlags::MS_PRIVATE
    .union(MsFlags::MS_SHARED)
    .union(MsFlags::MS_SLAVE)
    .union(MsFlags::MS_UNBINDABLE)
    .union(MsFlags::MS_REC)
    .union(MsFlags::MS_BIND);

fuzz_target!(|opts: Vec<Opt>| {
    let options: Vec<String> = opts.iter().map(Opt::text).collect();
    let parsed = parse(&options);

    assert!(
        (parsed.flags & PROPAGATION).is_empty(),
        "{options:?} -> flags {:?}",
        parsed.flags
    );
    let attrs = parsed.recursive_attrs;
    assert_eq!(attrs.set & attrs.clear, 0, "{options:?} -> {attrs:?}");
    assert!(
        !parsed.recursive || parsed.bind,
        "{options:?}: rbind without bind"
    );

    let expected_propagation: Vec<MsFlags> = options
        .iter()
        .filter_map(|o| propagation_option(o))
        .collect();
    assert_eq!(parsed.propagation, expected_propagation, "{options:?}");
    for flags in &parsed.propagation {
        // Exactly one propagation type per change, or mount(2) refuses it.
        let kinds = (*flags & !MsFlags::MS_REC).bits().count_ones();
        assert_eq!(kinds, 1, "{options:?} -> {flags:?}");
    }

    let expected_data: Vec<&String> = options.iter().filter(|o| !is_option(o)).collect();
    assert_eq!(
        parsed.data.iter().collect::<Vec<_>>(),
        expected_data,
        "{options:?}"
    );
    assert_eq!(
        parsed.data_string(),
        (!expected_data.is_empty()).then(|| parsed.data.join(","))
    );
});
