//! The user process's identity: uid, gids, umask and the five capability sets.
//!
//! Capability names are translated before fork (errors surface at `create`); init only applies
//! the prepared sets, in the order the kernel's capset rules allow.

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, User};

/// The prepared capability sets; `None` for a set the config leaves out (left as it is).
#[derive(Debug, Clone, Default)]
pub struct CapsPlan {
    pub bounding: Option<CapsHashSet>,
    pub effective: Option<CapsHashSet>,
    pub permitted: Option<CapsHashSet>,
    pub inheritable: Option<CapsHashSet>,
    pub ambient: Option<CapsHashSet>,
}

/// Translates one set. A set missing from a `capabilities` object that is there means an empty
/// set (podman writes `"capabilities": {}` for `--cap-drop all`, and runc reads it so).
fn translate(field: &str, set: &Option<Capabilities>) -> Result<Option<CapsHashSet>, String> {
    let supported = caps::runtime::thread_all_supported();
    let mut out = CapsHashSet::new();
    for cap in set.iter().flatten() {
        let name = format!("CAP_{cap}");
        let parsed: Capability = name
            .parse()
            .map_err(|_| format!("process.capabilities.{field}: {name} is not known to runvm"))?;
        // A capability newer than this kernel cannot be held; runc skips these the same way.
        if supported.contains(&parsed) {
            out.insert(parsed);
        }
    }
    Ok(Some(out))
}

impl CapsPlan {
    /// Without a `capabilities` object the process keeps the capabilities it has (runc's
    /// behaviour); with one, every set it leaves out is empty.
    pub fn from_spec(caps: Option<&LinuxCapabilities>) -> Result<Self, String> {
        let Some(c) = caps else {
            return Ok(CapsPlan::default());
        };
        Ok(CapsPlan {
            bounding: translate("bounding", c.bounding())?,
            effective: translate("effective", c.effective())?,
            permitted: translate("permitted", c.permitted())?,
            inheritable: translate("inheritable", c.inheritable())?,
            ambient: translate("ambient", c.ambient())?,
        })
    }

    /// Fails when a configured capability is missing from the runtime's own bounding set. Such a
    /// capability can never be granted (only a new user namespace starts from a full bounding
    /// set, so callers skip this check then); saying so at `create` beats an init that dies
    /// after `start` with the container's output empty.
    pub fn check_grantable(&self) -> Result<(), String> {
        let available = caps::read(None, CapSet::Bounding)
            .map_err(|e| format!("reading the runtime's capability bounding set: {e}"))?;
        let sets = [
            ("bounding", &self.bounding),
            ("effective", &self.effective),
            ("permitted", &self.permitted),
            ("inheritable", &self.inheritable),
            ("ambient", &self.ambient),
        ];
        for (field, set) in sets {
            let mut missing: Vec<String> = set
                .iter()
                .flatten()
                .filter(|cap| !available.contains(cap))
                .map(|cap| cap.to_string())
                .collect();
            if !missing.is_empty() {
                missing.sort();
                return Err(format!(
                    "process.capabilities.{field}: {} not in this host's capability bounding set, \
                     so runvm cannot grant it",
                    missing.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Drops what is not in the bounding set. Needs CAP_SETPCAP, so it runs before setuid.
    pub fn drop_bounding(&self) -> Result<(), String> {
        let Some(keep) = &self.bounding else {
            return Ok(());
        };
        for cap in caps::runtime::thread_all_supported() {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|e| format!("process.capabilities.bounding: dropping {cap}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Sets effective, inheritable, permitted, then ambient. Effective goes first so that it never
    /// exceeds permitted while permitted shrinks.
    pub fn apply(&self) -> Result<(), String> {
        let sets = [
            ("effective", CapSet::Effective, &self.effective),
            ("inheritable", CapSet::Inheritable, &self.inheritable),
            ("permitted", CapSet::Permitted, &self.permitted),
        ];
        for (field, set, caps_set) in sets {
            if let Some(wanted) = caps_set {
                caps::set(None, set, wanted)
                    .map_err(|e| format!("process.capabilities.{field}: {e}"))?;
            }
        }
        if let Some(ambient) = &self.ambient {
            caps::clear(None, CapSet::Ambient)
                .map_err(|e| format!("process.capabilities.ambient: {e}"))?;
            // The kernel only lets a capability be ambient if it is permitted and inheritable.
            // Many configs (runc's template among them) list ambient capabilities without
            // inheritable ones; runc warns and goes on, and so does runvm.
            let permitted = caps::read(None, CapSet::Permitted).unwrap_or_default();
            let inheritable = caps::read(None, CapSet::Inheritable).unwrap_or_default();
            for cap in ambient {
                if !(permitted.contains(cap) && inheritable.contains(cap)) {
                    crate::logging::debug(&format!(
                        "process.capabilities.ambient: {cap} skipped: not both permitted and inheritable"
                    ));
                    continue;
                }
                caps::raise(None, CapSet::Ambient, *cap)
                    .map_err(|e| format!("process.capabilities.ambient: raising {cap}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Switches to the configured uid/gid/groups, keeping capabilities across the uid change so
/// that `CapsPlan::apply` can set them afterwards.
pub fn switch_user(user: &User, may_setgroups: bool) -> Result<(), String> {
    // SAFETY: prctl(PR_SET_KEEPCAPS) only changes a flag of the calling thread.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "prctl(PR_SET_KEEPCAPS): {}",
            std::io::Error::last_os_error()
        ));
    }
    if may_setgroups {
        let groups: Vec<Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| Gid::from_raw(*g))
            .collect();
        setgroups(&groups).map_err(|e| format!("process.user.additionalGids: setgroups: {e}"))?;
    }
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).map_err(|e| format!("process.user.gid {}: {e}", user.gid()))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).map_err(|e| format!("process.user.uid {}: {e}", user.uid()))?;
    // SAFETY: as above; keep-caps must not leak into the user's program.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    if let Some(mask) = user.umask() {
        // SAFETY: umask only changes the calling process's file mode mask.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_spec_names_to_caps() {
        let spec: LinuxCapabilities =
            serde_json::from_str(r#"{"bounding":["CAP_CHOWN","CAP_KILL"],"effective":[]}"#)
                .unwrap();
        let plan = CapsPlan::from_spec(Some(&spec)).unwrap();
        let b = plan.bounding.unwrap();
        assert!(b.contains(&Capability::CAP_CHOWN) && b.contains(&Capability::CAP_KILL));
        assert_eq!(b.len(), 2);
        assert!(plan.effective.unwrap().is_empty());
        assert!(
            plan.permitted.unwrap().is_empty(),
            "a set left out is empty"
        );
    }

    #[test]
    fn capability_outside_the_bounding_set_is_not_grantable() {
        let bounding = caps::read(None, CapSet::Bounding).unwrap();
        let within = CapsPlan {
            permitted: Some(bounding.clone()),
            ambient: Some(bounding.clone()),
            ..CapsPlan::default()
        };
        assert_eq!(within.check_grantable(), Ok(()));
        let Some(missing) = caps::runtime::thread_all_supported()
            .into_iter()
            .find(|c| !bounding.contains(c))
        else {
            println!("SKIP: this process's bounding set holds every capability");
            return;
        };
        let outside = CapsPlan {
            effective: Some(CapsHashSet::from([missing])),
            ..CapsPlan::default()
        };
        let err = outside.check_grantable().unwrap_err();
        assert!(
            err.starts_with("process.capabilities.effective: ")
                && err.contains(&missing.to_string()),
            "{err}"
        );
    }
}
