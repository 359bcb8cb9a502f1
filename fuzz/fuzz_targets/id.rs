//! Container ids, against a reference model of the rule: 1 to 1024 bytes of `[A-Za-z0-9_+.-]`,
//! not "." or "..". Above all an accepted id is one plain path component, because it names a
//! directory under the state root.
//!
//! Half the inputs are raw strings; the other half are drawn from the allowed characters plus
//! '/', so the accepting side and its edges ("..", long ids) get explored too.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use runvm_oci::validate_id;

const ALPHABET: &[u8] = b"Aa0_+.-/.";

#[derive(Arbitrary, Debug)]
enum IdInput {
    Raw(String),
    /// Characters picked from ALPHABET, each repeated `repeat + 1` times (reaches 1024 cheaply).
    Picked {
        picks: Vec<u8>,
        repeat: u8,
    },
}

impl IdInput {
    fn text(&self) -> String {
        match self {
            IdInput::Raw(s) => s.clone(),
            IdInput::Picked { picks, repeat } => picks
                .iter()
                .flat_map(|p| {
                    let c = char::from(ALPHABET[usize::from(*p) % ALPHABET.len()]);
                    std::iter::repeat_n(c, usize::from(*repeat % 64) + 1)
                })
                .collect(),
        }
    }
}

fn model_accepts(id: &str) -> bool {
    (1..=1024).contains(&id.len())
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
}

fuzz_target!(|input: IdInput| {
    let id = input.text();
    let result = validate_id(&id);
    if result.is_ok() {
        assert!(!id.contains('/'), "accepted {id:?}");
        assert!(id != "." && id != "..", "accepted {id:?}");
        assert!(!id.is_empty() && !id.contains('\0'), "accepted {id:?}");
    }
    assert_eq!(result.is_ok(), model_accepts(&id), "{id:?}: {result:?}");
    if let Err(err) = result {
        assert!(err.to_string().starts_with("container id"), "{err}");
    }
});
