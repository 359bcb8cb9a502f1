use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::{validate_spec, OciError};

pub const CONFIG_FILE: &str = "config.json";

/// A loaded and validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute, canonical bundle directory.
    pub dir: PathBuf,
    /// Absolute, canonical root filesystem directory.
    pub rootfs: PathBuf,
    pub spec: Spec,
}

/// Loads `DIR/config.json`, validates it and resolves the root filesystem.
pub fn load_bundle(dir: &Path) -> Result<Bundle, OciError> {
    let dir = fs::canonicalize(dir).map_err(|source| OciError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let config_path = dir.join(CONFIG_FILE);
    let text = fs::read(&config_path).map_err(|source| OciError::Io {
        path: config_path.clone(),
        source,
    })?;
    let spec = parse_and_validate(&text, &config_path)?;
    let rootfs = resolve_rootfs(&dir, &spec)?;
    Ok(Bundle { dir, rootfs, spec })
}

/// Reads and parses a config file without the bundle checks (for commands on a container that
/// already exists, e.g. `exec` reading its seccomp profile).
pub fn load_spec(path: &Path) -> Result<Spec, OciError> {
    let text = fs::read(path).map_err(|source| OciError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_spec(&text, path)
}

/// Parses and validates config.json text: everything `load_bundle` checks short of the rootfs.
/// `file` only names the source in errors. Needs no filesystem, so the fuzzer can call it.
pub fn parse_and_validate(text: &[u8], file: &Path) -> Result<Spec, OciError> {
    let spec = parse_spec(text, file)?;
    validate_spec(&spec)?;
    Ok(spec)
}

/// Parses config.json, reporting the JSON path of the first field that does not fit the schema
/// (e.g. `process.capabilities.bounding[2]` for an unknown capability name).
pub(crate) fn parse_spec(text: &[u8], file: &Path) -> Result<Spec, OciError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        OciError::Parse {
            file: file.to_path_buf(),
            field: if field == "." {
                "(document)".into()
            } else {
                field
            },
            message: inner.to_string(),
        }
    })
}

/// Parses a process document (`exec --process FILE`), naming the field that does not fit.
pub fn parse_process(text: &[u8], file: &Path) -> Result<oci_spec::runtime::Process, OciError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(&mut de).map_err(|err| OciError::Parse {
        file: file.to_path_buf(),
        field: err.path().to_string(),
        message: err.into_inner().to_string(),
    })
}

fn resolve_rootfs(bundle: &Path, spec: &Spec) -> Result<PathBuf, OciError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| OciError::invalid("root", "missing (the root filesystem is required)"))?;
    if root.path().as_os_str().is_empty() {
        return Err(OciError::invalid("root.path", "must not be empty"));
    }
    let path = bundle.join(root.path());
    let rootfs = fs::canonicalize(&path)
        .map_err(|e| OciError::invalid("root.path", format!("{}: {e}", path.display())))?;
    if !rootfs.is_dir() {
        return Err(OciError::invalid(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    Ok(rootfs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_bundle(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("rootfs")).unwrap();
        fs::write(dir.path().join(CONFIG_FILE), config).unwrap();
        dir
    }

    const MINIMAL: &str = r#"{"ociVersion":"1.2.0","root":{"path":"rootfs"},
        "process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}}"#;

    #[test]
    fn loads_a_minimal_bundle() {
        let dir = write_bundle(MINIMAL);
        let bundle = load_bundle(dir.path()).unwrap();
        assert_eq!(
            bundle.rootfs,
            fs::canonicalize(dir.path().join("rootfs")).unwrap()
        );
    }

    #[test]
    fn invalid_json_names_the_file() {
        let dir = write_bundle("{not json");
        let err = load_bundle(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn unknown_capability_names_the_field() {
        let dir = write_bundle(
            r#"{"ociVersion":"1.2.0","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],
            "user":{"uid":0,"gid":0},"capabilities":{"bounding":["CAP_CHOWN","CAP_NOPE"]}}}"#,
        );
        let err = load_bundle(dir.path()).unwrap_err().to_string();
        assert!(err.contains("process.capabilities.bounding"), "{err}");
        assert!(err.contains("CAP_NOPE"), "{err}");
    }

    #[test]
    fn unknown_rlimit_and_namespace_name_their_fields() {
        let dir = write_bundle(
            r#"{"ociVersion":"1.2.0","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],
            "user":{"uid":0,"gid":0},"rlimits":[{"type":"RLIMIT_BOGUS","hard":1,"soft":1}]}}"#,
        );
        let err = load_bundle(dir.path()).unwrap_err().to_string();
        assert!(err.contains("process.rlimits"), "{err}");
        let dir = write_bundle(
            r#"{"ociVersion":"1.2.0","root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"bogus"}]}}"#,
        );
        let err = load_bundle(dir.path()).unwrap_err().to_string();
        assert!(err.contains("linux.namespaces"), "{err}");
    }

    #[test]
    fn parse_and_validate_needs_no_bundle() {
        let file = Path::new("x.json");
        let spec = parse_and_validate(MINIMAL.as_bytes(), file).unwrap();
        assert_eq!(spec.version(), "1.2.0");
        let err = parse_and_validate(br#"{"ociVersion":"2.0.0"}"#, file).unwrap_err();
        assert!(err.to_string().contains("ociVersion"), "{err}");
        let err = parse_and_validate(b"[", file).unwrap_err();
        assert!(err.to_string().contains("x.json"), "{err}");
    }

    #[test]
    fn missing_rootfs_names_root_path() {
        let dir = write_bundle(MINIMAL);
        fs::remove_dir(dir.path().join("rootfs")).unwrap();
        let err = load_bundle(dir.path()).unwrap_err().to_string();
        assert!(err.contains("root.path"), "{err}");
    }

    #[test]
    fn missing_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_bundle(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
    }
}
