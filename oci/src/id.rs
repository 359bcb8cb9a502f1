use crate::OciError;

/// Longest id accepted: it becomes a directory name and part of cgroup paths.
const MAX_ID_LEN: usize = 1024;

/// Checks a container id: it names a directory under the state root, so it must be one plain
/// path component. Allowed characters are those runc allows: `[A-Za-z0-9_+.-]`.
pub fn validate_id(id: &str) -> Result<(), OciError> {
    let bad = |message: &str| OciError::BadId {
        id: id.to_string(),
        message: message.to_string(),
    };
    if id.is_empty() {
        return Err(bad("must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(bad("is longer than 1024 bytes"));
    }
    if id == "." || id == ".." {
        return Err(bad("must not be \".\" or \"..\""));
    }
    if id.contains('/') {
        return Err(bad("must not contain '/'"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
    {
        return Err(bad(&format!(
            "character {c:?} is not allowed (use letters, digits, '_', '+', '-', '.')"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        for id in ["a", "web-1", "x_y+z.2", "A9"] {
            assert!(validate_id(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_path_like_and_odd_ids() {
        for id in ["", ".", "..", "a/b", "../x", "a b", "é", "a\0b"] {
            let err = validate_id(id).unwrap_err().to_string();
            assert!(err.starts_with("container id"), "{id}: {err}");
        }
        assert!(validate_id(&"x".repeat(1025)).is_err());
    }
}
