//! Reading and writing cgroup control files with errors that name the OCI field and the file.
//!
//! Control files are opened without O_CREAT: a missing file means the kernel lacks that knob, and
//! creating a regular file in its place (possible only in test trees) would hide that.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use super::error::CgroupError;

/// Writes `value` to `dir/file` in one write(2), replacing the file's value.
pub(crate) fn write(dir: &Path, file: &str, value: &str, field: &str) -> Result<(), CgroupError> {
    write_with(dir, file, value, field, false)
}

/// Writes `value` to `dir/file` with O_APPEND: for list-like files (cgroup.procs, devices.allow,
/// cgroup.subtree_control) where each write adds an entry rather than replacing a value.
pub(crate) fn append(dir: &Path, file: &str, value: &str, field: &str) -> Result<(), CgroupError> {
    write_with(dir, file, value, field, true)
}

fn write_with(
    dir: &Path,
    file: &str,
    value: &str,
    field: &str,
    append: bool,
) -> Result<(), CgroupError> {
    let path = dir.join(file);
    let result = OpenOptions::new()
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&path)
        // cgroupfs parses each write(2) on its own, so the value must go in a single call.
        .and_then(|mut f| {
            let written = f.write(value.as_bytes())?;
            if written == value.len() {
                Ok(())
            } else {
                Err(std::io::Error::new(ErrorKind::WriteZero, "short write"))
            }
        });
    result.map_err(|source| CgroupError::Write {
        field: field.to_string(),
        value: value.to_string(),
        path,
        source,
    })
}

/// Reads `dir/file` as text.
pub(crate) fn read(dir: &Path, file: &str, field: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    let mut content = String::new();
    OpenOptions::new()
        .read(true)
        .open(&path)
        .and_then(|mut f| f.read_to_string(&mut content))
        .map_err(|source| CgroupError::Read {
            field: field.to_string(),
            path: path.clone(),
            source,
        })?;
    Ok(content)
}

/// Reads `dir/file`, or `None` when the file does not exist.
pub(crate) fn read_optional(
    dir: &Path,
    file: &str,
    field: &str,
) -> Result<Option<String>, CgroupError> {
    match read(dir, file, field) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parses a single unsigned number; "max" (cgroup v2's "no limit") reads as `u64::MAX`.
pub(crate) fn parse_u64(
    text: &str,
    dir: &Path,
    file: &str,
    field: &str,
) -> Result<u64, CgroupError> {
    let trimmed = text.trim();
    if trimmed == "max" {
        return Ok(u64::MAX);
    }
    trimmed.parse().map_err(|_| CgroupError::Parse {
        field: field.to_string(),
        path: dir.join(file),
        content: trimmed.to_string(),
    })
}

/// Reads a file holding one number; missing file = `None`.
pub(crate) fn read_u64_optional(
    dir: &Path,
    file: &str,
    field: &str,
) -> Result<Option<u64>, CgroupError> {
    match read_optional(dir, file, field)? {
        Some(text) => parse_u64(&text, dir, file, field).map(Some),
        None => Ok(None),
    }
}

/// Parses "key value" lines (memory.stat, cpu.stat, …) into pairs, skipping malformed lines.
pub(crate) fn key_values(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|line| {
        let mut parts = line.split_whitespace();
        let key = parts.next()?;
        let value = parts.next()?.parse().ok()?;
        Some((key, value))
    })
}

/// True when `dir/file` exists (a knob this kernel offers).
pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_names_field_value_and_file_on_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(
            dir.path(),
            "memory.limit_in_bytes",
            "1048576",
            "linux.resources.memory.limit",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("linux.resources.memory.limit: writing 1048576 to "),
            "{msg}"
        );
        assert!(
            msg.ends_with("memory.limit_in_bytes: No such file or directory"),
            "{msg}"
        );
        assert!(err.is_not_found());
    }

    #[test]
    fn write_replaces_and_append_accumulates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "old value").unwrap();
        write(dir.path(), "f", "1", "x").unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("f")).unwrap(), "1");
        append(dir.path(), "f", "2", "x").unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("f")).unwrap(), "12");
    }

    #[test]
    fn parse_u64_reads_max_and_rejects_garbage() {
        let d = Path::new("/x");
        assert_eq!(parse_u64("max\n", d, "f", "x").unwrap(), u64::MAX);
        assert_eq!(parse_u64(" 42\n", d, "f", "x").unwrap(), 42);
        assert!(parse_u64("4x2", d, "f", "x").is_err());
    }
}
