//! Turning `linux.cgroupsPath` into a path inside each hierarchy.

use std::path::{Component, Path, PathBuf};

use super::error::CgroupError;

/// Where the container's cgroup lives, relative to something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CgroupPath {
    /// Relative to each hierarchy's root (an absolute cgroupsPath, or the default).
    FromRoot(PathBuf),
    /// Relative to the runtime's own cgroup in each hierarchy (a relative cgroupsPath).
    FromOwnCgroup(PathBuf),
}

/// Parses `linux.cgroupsPath`; `None` means "/runvm/<id>".
pub(crate) fn parse(path: Option<&Path>, id: &str) -> Result<CgroupPath, CgroupError> {
    let Some(path) = path else {
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(CgroupError::invalid(
                "container id",
                id,
                "must be a non-empty name without '/' to name a cgroup",
            ));
        }
        return Ok(CgroupPath::FromRoot(PathBuf::from("runvm").join(id)));
    };
    let text = path.to_string_lossy();
    let path_err = |reason: &str| CgroupError::Path {
        path: text.to_string(),
        reason: reason.to_string(),
    };
    if text.split(':').count() == 3 {
        return Err(path_err(
            "looks like a systemd cgroup path (slice:prefix:name), but runvm manages cgroupfs \
             directly and this host runs no systemd; use a filesystem path such as /runvm/<id>",
        ));
    }
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => clean.push(part),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(path_err("must not contain '..'"));
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(path_err(
            "names the hierarchy root itself, which is not a container cgroup",
        ));
    }
    if path.is_absolute() {
        Ok(CgroupPath::FromRoot(clean))
    } else {
        Ok(CgroupPath::FromOwnCgroup(clean))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_absolute_and_relative_paths() {
        assert_eq!(
            parse(None, "abc").unwrap(),
            CgroupPath::FromRoot("runvm/abc".into())
        );
        assert_eq!(
            parse(Some(Path::new("/a/./b/")), "x").unwrap(),
            CgroupPath::FromRoot("a/b".into())
        );
        assert_eq!(
            parse(Some(Path::new("pods/c1")), "x").unwrap(),
            CgroupPath::FromOwnCgroup("pods/c1".into())
        );
    }

    #[test]
    fn rejects_escapes_systemd_form_and_root() {
        for bad in ["/a/../../etc", "../x", "/", "system.slice:runvm:abc"] {
            let err = parse(Some(Path::new(bad)), "x").unwrap_err().to_string();
            assert!(err.starts_with("linux.cgroupsPath"), "{bad}: {err}");
        }
        let msg = parse(Some(Path::new("machine.slice:runvm:c")), "x")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("systemd"), "{msg}");
        assert!(parse(None, "a/b").is_err());
        assert!(parse(None, "").is_err());
    }
}
