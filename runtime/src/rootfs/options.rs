//! Parsing of a mount's `options` list into mount(2) flags, propagation changes, recursive
//! attributes (mount_setattr) and the filesystem data string.

use nix::mount::MsFlags;

/// mount_setattr(2) attribute bits (linux/mount.h); libc does not export them.
pub mod attr {
    pub const RDONLY: u64 = 0x0000_0001;
    pub const NOSUID: u64 = 0x0000_0002;
    pub const NODEV: u64 = 0x0000_0004;
    pub const NOEXEC: u64 = 0x0000_0008;
    pub const ATIME_MASK: u64 = 0x0000_0070;
    pub const RELATIME: u64 = 0x0000_0000;
    pub const NOATIME: u64 = 0x0000_0010;
    pub const STRICTATIME: u64 = 0x0000_0020;
    pub const NODIRATIME: u64 = 0x0000_0080;
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// MS_NOSYMFOLLOW (Linux 5.10); nix's MsFlags lacks it.
pub const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// Attributes to change recursively on a mount tree with mount_setattr(AT_RECURSIVE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecursiveAttrs {
    pub set: u64,
    pub clear: u64,
    /// One of attr::RELATIME / NOATIME / STRICTATIME when an r*atime option was given.
    pub atime: Option<u64>,
}

impl RecursiveAttrs {
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0 && self.atime.is_none()
    }
}

/// A parsed `options` list. Later options win over earlier ones ("ro","rw" is read-write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for mount(2) (never includes propagation flags).
    pub flags: MsFlags,
    /// "bind" or "rbind" was given.
    pub bind: bool,
    /// "rbind" was given.
    pub recursive: bool,
    /// Propagation changes, applied one by one after the mount, in the given order.
    pub propagation: Vec<MsFlags>,
    /// "r"-prefixed options (rro, rnosuid, ...).
    pub recursive_attrs: RecursiveAttrs,
    /// "tmpcopyup" was given.
    pub tmpcopyup: bool,
    /// "idmap" or "ridmap" was given.
    pub idmap: bool,
    /// Everything else, passed to the filesystem as data ("mode=755", "size=65536k", ...).
    pub data: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            bind: false,
            recursive: false,
            propagation: Vec::new(),
            recursive_attrs: RecursiveAttrs::default(),
            tmpcopyup: false,
            idmap: false,
            data: Vec::new(),
        }
    }
}

impl MountOptions {
    /// The comma-joined data string, or None when there is no data.
    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

/// Per-mount flags a bind mount only gets through a second, MS_REMOUNT call.
pub const REMOUNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME)
    .union(MS_NOSYMFOLLOW);

/// Options that set (false) or clear (true) a mount(2) flag.
fn flag_option(name: &str) -> Option<(bool, MsFlags)> {
    let entry = match name {
        "ro" => (false, MsFlags::MS_RDONLY),
        "rw" => (true, MsFlags::MS_RDONLY),
        "nosuid" => (false, MsFlags::MS_NOSUID),
        "suid" => (true, MsFlags::MS_NOSUID),
        "nodev" => (false, MsFlags::MS_NODEV),
        "dev" => (true, MsFlags::MS_NODEV),
        "noexec" => (false, MsFlags::MS_NOEXEC),
        "exec" => (true, MsFlags::MS_NOEXEC),
        "sync" => (false, MsFlags::MS_SYNCHRONOUS),
        "async" => (true, MsFlags::MS_SYNCHRONOUS),
        "dirsync" => (false, MsFlags::MS_DIRSYNC),
        "remount" => (false, MsFlags::MS_REMOUNT),
        "mand" => (false, MsFlags::MS_MANDLOCK),
        "nomand" => (true, MsFlags::MS_MANDLOCK),
        "noatime" => (false, MsFlags::MS_NOATIME),
        "atime" => (true, MsFlags::MS_NOATIME),
        "nodiratime" => (false, MsFlags::MS_NODIRATIME),
        "diratime" => (true, MsFlags::MS_NODIRATIME),
        "relatime" => (false, MsFlags::MS_RELATIME),
        "norelatime" => (true, MsFlags::MS_RELATIME),
        "strictatime" => (false, MsFlags::MS_STRICTATIME),
        "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
        "lazytime" => (false, MsFlags::MS_LAZYTIME),
        "nolazytime" => (true, MsFlags::MS_LAZYTIME),
        "iversion" => (false, MsFlags::MS_I_VERSION),
        "noiversion" => (true, MsFlags::MS_I_VERSION),
        "silent" => (false, MsFlags::MS_SILENT),
        "loud" => (true, MsFlags::MS_SILENT),
        "nosymfollow" => (false, MS_NOSYMFOLLOW),
        "symfollow" => (true, MS_NOSYMFOLLOW),
        _ => return None,
    };
    Some(entry)
}

/// Propagation options; also used for linux.rootfsPropagation.
pub fn propagation_option(name: &str) -> Option<MsFlags> {
    let flags = match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    };
    Some(flags)
}

/// What a recursive option does: set or clear an attribute, or pick an atime mode.
enum RecursiveOption {
    Set(u64),
    Clear(u64),
    Atime(u64),
}

fn recursive_option(name: &str) -> Option<RecursiveOption> {
    use RecursiveOption::*;
    let entry = match name {
        "rro" => Set(attr::RDONLY),
        "rrw" => Clear(attr::RDONLY),
        "rnosuid" => Set(attr::NOSUID),
        "rsuid" => Clear(attr::NOSUID),
        "rnodev" => Set(attr::NODEV),
        "rdev" => Clear(attr::NODEV),
        "rnoexec" => Set(attr::NOEXEC),
        "rexec" => Clear(attr::NOEXEC),
        "rnodiratime" => Set(attr::NODIRATIME),
        "rdiratime" => Clear(attr::NODIRATIME),
        "rnosymfollow" => Set(attr::NOSYMFOLLOW),
        "rsymfollow" => Clear(attr::NOSYMFOLLOW),
        // The kernel keeps one atime mode per mount, so these pick a mode rather than a bit.
        "rrelatime" | "ratime" | "rnostrictatime" => Atime(attr::RELATIME),
        "rnoatime" => Atime(attr::NOATIME),
        "rstrictatime" | "rnorelatime" => Atime(attr::STRICTATIME),
        _ => return None,
    };
    Some(entry)
}

/// Every option name `parse` understands as an option rather than filesystem data (what
/// `runvm features` reports as mountOptions). "idmap"/"ridmap" parse but id-mapped mounts are
/// refused, so they are not listed.
pub const KNOWN_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// Parses a mount's options. Unknown strings are filesystem data, as mount(8) and runc treat them.
pub fn parse<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut out = MountOptions::default();
    for option in options {
        let option = option.as_ref();
        if let Some((clear, flag)) = flag_option(option) {
            if clear {
                out.flags.remove(flag);
            } else {
                out.flags.insert(flag);
            }
        } else if let Some(flags) = propagation_option(option) {
            out.propagation.push(flags);
        } else if let Some(rec) = recursive_option(option) {
            let attrs = &mut out.recursive_attrs;
            match rec {
                RecursiveOption::Set(bit) => {
                    attrs.set |= bit;
                    attrs.clear &= !bit;
                }
                RecursiveOption::Clear(bit) => {
                    attrs.clear |= bit;
                    attrs.set &= !bit;
                }
                RecursiveOption::Atime(mode) => attrs.atime = Some(mode),
            }
        } else {
            match option {
                "defaults" => {}
                "bind" => out.bind = true,
                "rbind" => {
                    out.bind = true;
                    out.recursive = true;
                }
                "tmpcopyup" => out.tmpcopyup = true,
                "idmap" | "ridmap" => out.idmap = true,
                _ => out.data.push(option.to_string()),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_option_is_understood_not_passed_as_data() {
        for name in KNOWN_OPTIONS {
            assert!(
                parse(&[name]).data.is_empty(),
                "{name} fell through to data"
            );
        }
    }

    #[test]
    fn flags_data_and_bind_are_split() {
        let o = parse(&[
            "nosuid",
            "strictatime",
            "mode=755",
            "size=65536k",
            "rbind",
            "ro",
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME | MsFlags::MS_RDONLY
        );
        assert!(o.bind && o.recursive);
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
        assert!(o.propagation.is_empty());
    }

    #[test]
    fn later_options_win() {
        let o = parse(&["ro", "nodev", "rw", "dev", "noexec"]);
        assert_eq!(o.flags, MsFlags::MS_NOEXEC);
        let o = parse(&["rw", "ro"]);
        assert_eq!(o.flags, MsFlags::MS_RDONLY);
    }

    #[test]
    fn propagation_kept_in_order_and_not_in_flags() {
        let o = parse(&["bind", "rprivate", "shared"]);
        assert!(o.bind && !o.recursive);
        assert_eq!(
            o.propagation,
            vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC, MsFlags::MS_SHARED]
        );
        assert_eq!(o.flags, MsFlags::empty());
        assert_eq!(o.data_string(), None);
    }

    #[test]
    fn recursive_attributes() {
        let o = parse(&["rro", "rnosuid", "rsuid", "rnoatime", "rnodev"]);
        assert_eq!(o.recursive_attrs.set, attr::RDONLY | attr::NODEV);
        assert_eq!(o.recursive_attrs.clear, attr::NOSUID);
        assert_eq!(o.recursive_attrs.atime, Some(attr::NOATIME));
        assert_eq!(o.flags, MsFlags::empty());
        assert!(parse(&["ro"]).recursive_attrs.is_empty());
    }

    #[test]
    fn special_and_unknown_options() {
        let o = parse(&[
            "defaults",
            "tmpcopyup",
            "idmap",
            "newinstance",
            "ptmxmode=0666",
            "nosymfollow",
        ]);
        assert!(o.tmpcopyup && o.idmap && !o.bind);
        assert_eq!(o.flags, MS_NOSYMFOLLOW);
        assert_eq!(
            o.data_string().as_deref(),
            Some("newinstance,ptmxmode=0666")
        );
    }
}
