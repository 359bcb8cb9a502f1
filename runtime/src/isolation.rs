//! Choosing a sandbox's isolation class, and runvm's own settings file.
//!
//! The class comes from, first to last: `--isolation` on `create`/`run`, the
//! `runvm.io/isolation` annotation in config.json, the name runvm was invoked by (a link named
//! `runvm-vm` or `runvm-emulated`, so Docker's `--add-runtime`, containerd's `BinaryName` and a
//! RuntimeClass handler pick a class without annotations), `isolation` in
//! `/etc/runvm/config.toml`, and else `container`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use runvm_oci::{IsolationClass, ISOLATION_ANNOTATION};
use serde::Deserialize;

/// runvm's settings file; `RUNVM_CONFIG` names another (tests, non-root users).
pub const CONFIG_PATH: &str = "/etc/runvm/config.toml";

/// `/etc/runvm/config.toml`. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The class of sandboxes that name none.
    pub isolation: Option<IsolationClass>,
    #[serde(default)]
    pub vm: VmSettings,
}

/// Settings of the VM classes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSettings {
    /// Guest RAM when the config sets no memory limit.
    pub memory_mib: Option<u64>,
    /// vCPUs when the config sets no CPU quota or cpuset.
    pub cpus: Option<u32>,
    /// A vmlinux to boot instead of Debian's cloud kernel.
    pub kernel: Option<PathBuf>,
    /// Where guest images are cached.
    pub cache_dir: Option<PathBuf>,
    pub qemu: Option<PathBuf>,
    pub virtiofsd: Option<PathBuf>,
    /// How long the guest agent may take to answer after the VM starts.
    pub boot_timeout_secs: Option<u64>,
}

impl RuntimeConfig {
    /// Reads the settings file; a missing file means every default.
    pub fn load() -> Result<Self, String> {
        let path = std::env::var_os("RUNVM_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(CONFIG_PATH));
        Self::load_from(&path)
    }

    pub fn load_from(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// The class a link's name stands for: `runvm-vm`, `runvm-emulated`.
pub fn class_of_program(argv0: &std::ffi::OsStr) -> Option<IsolationClass> {
    let name = Path::new(argv0).file_name()?.to_str()?;
    let class = name.strip_prefix("runvm-")?;
    class.parse().ok().filter(|c: &IsolationClass| c.is_vm())
}

/// Picks the class of a new sandbox (see the module doc for the order).
pub fn choose(
    flag: Option<IsolationClass>,
    annotations: Option<&HashMap<String, String>>,
    invoked_as: Option<IsolationClass>,
    config: &RuntimeConfig,
) -> Result<IsolationClass, String> {
    if let Some(class) = flag {
        return Ok(class);
    }
    if let Some(value) = annotations.and_then(|a| a.get(ISOLATION_ANNOTATION)) {
        return value
            .parse()
            .map_err(|e| format!("annotations.{ISOLATION_ANNOTATION}: {e}"));
    }
    Ok(invoked_as.or(config.isolation).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use IsolationClass::*;

    #[test]
    fn flag_beats_annotation_beats_name_beats_config() {
        let config = RuntimeConfig {
            isolation: Some(Vm),
            ..Default::default()
        };
        let ann = HashMap::from([(ISOLATION_ANNOTATION.to_string(), "emulated".to_string())]);
        assert_eq!(
            choose(Some(Container), Some(&ann), Some(Vm), &config),
            Ok(Container)
        );
        assert_eq!(choose(None, Some(&ann), Some(Vm), &config), Ok(Emulated));
        assert_eq!(choose(None, None, Some(Emulated), &config), Ok(Emulated));
        assert_eq!(choose(None, None, None, &config), Ok(Vm));
        assert_eq!(
            choose(None, None, None, &RuntimeConfig::default()),
            Ok(Container)
        );
    }

    #[test]
    fn a_bad_annotation_names_itself() {
        let ann = HashMap::from([(ISOLATION_ANNOTATION.to_string(), "xen".to_string())]);
        let e = choose(None, Some(&ann), None, &RuntimeConfig::default()).unwrap_err();
        assert!(e.starts_with("annotations.runvm.io/isolation:"), "{e}");
    }

    #[test]
    fn link_names_pick_vm_classes_only() {
        let of = |s: &str| class_of_program(std::ffi::OsStr::new(s));
        assert_eq!(of("/usr/local/bin/runvm-emulated"), Some(Emulated));
        assert_eq!(of("runvm-vm"), Some(Vm));
        assert_eq!(of("/usr/bin/runvm"), None);
        assert_eq!(of("runvm-container"), None);
        assert_eq!(of("runvm-other"), None);
    }

    #[test]
    fn settings_file_parses_and_names_itself_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert!(RuntimeConfig::load_from(&path).unwrap().isolation.is_none());
        std::fs::write(&path, "isolation = \"emulated\"\n[vm]\nmemory_mib = 512\n").unwrap();
        let c = RuntimeConfig::load_from(&path).unwrap();
        assert_eq!(c.isolation, Some(Emulated));
        assert_eq!(c.vm.memory_mib, Some(512));
        std::fs::write(&path, "isolation = \"xen\"\n").unwrap();
        let e = RuntimeConfig::load_from(&path).unwrap_err();
        assert!(e.contains("config.toml"), "{e}");
        std::fs::write(&path, "isolaton = \"vm\"\n").unwrap();
        assert!(RuntimeConfig::load_from(&path).is_err());
    }
}
