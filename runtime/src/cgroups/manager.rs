//! `CgroupManager`: one container's cgroup across every hierarchy of the host's layout.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use super::cgroup_path::{self, CgroupPath};
use super::error::CgroupError;
use super::hierarchy::{self, Hierarchy, HierarchyKind};
use super::layout::{Layout, CGROUP_ROOT};
use super::resources::{self, Controllers, Target, Version};
use super::stats::{self, Stats};
use super::{fsio, tree, v1, v2};

/// What the container needs to mount one hierarchy's view of its own cgroup as cgroupfs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMountSource {
    /// Directory name under /sys/fs/cgroup: "memory", "cpu,cpuacct", "systemd", "unified", or ""
    /// for a pure v2 host (mounted at /sys/fs/cgroup itself).
    pub name: String,
    /// The container's cgroup directory on the host.
    pub host_path: PathBuf,
    /// "cgroup" or "cgroup2".
    pub fstype: String,
    /// Mount data: the controllers ("cpu,cpuacct"), "name=systemd", or "" for cgroup2.
    pub options: String,
}

/// One hierarchy and the container's place in it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Placement {
    hierarchy: Hierarchy,
    /// The container's cgroup relative to the hierarchy's mount.
    rel: PathBuf,
    /// `mount/rel`.
    dir: PathBuf,
}

/// A manager's placement, kept in state.json between commands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedCgroup {
    layout: Layout,
    placements: Vec<Placement>,
    created: Vec<PathBuf>,
}

/// Creates, configures, inspects and removes one container's cgroup in every hierarchy.
#[derive(Clone, Debug)]
pub struct CgroupManager {
    layout: Layout,
    placements: Vec<Placement>,
    /// Directories `create` made (top first), shared between clones; `None` until `create` or
    /// `with_created_dirs` says what they are.
    created: Arc<Mutex<Option<Vec<PathBuf>>>>,
}

impl CgroupManager {
    /// A manager for container `id` with `linux.cgroupsPath` = `path` on the host's hierarchies.
    /// Cheap: lists /sys/fs/cgroup and, for a relative path only, reads /proc/self/cgroup.
    pub fn new(layout: Layout, path: Option<&Path>, id: &str) -> Result<Self, CgroupError> {
        Self::with_root(Path::new(CGROUP_ROOT), layout, path, id)
    }

    /// Like [`CgroupManager::new`] with the hierarchies under `root` (for tests).
    pub fn with_root(
        root: &Path,
        layout: Layout,
        path: Option<&Path>,
        id: &str,
    ) -> Result<Self, CgroupError> {
        let parsed = cgroup_path::parse(path, id)?;
        let hierarchies = hierarchy::discover(root, layout)?;
        let own_cgroups = match &parsed {
            CgroupPath::FromOwnCgroup(_) => {
                std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default()
            }
            CgroupPath::FromRoot(_) => String::new(),
        };
        let placements = hierarchies
            .into_iter()
            .map(|h| {
                let rel = match &parsed {
                    CgroupPath::FromRoot(rel) => rel.clone(),
                    CgroupPath::FromOwnCgroup(rel) => hierarchy::own_cgroup(&own_cgroups, &h)
                        .unwrap_or_default()
                        .join(rel),
                };
                let dir = h.mount.join(&rel);
                Placement {
                    hierarchy: h,
                    rel,
                    dir,
                }
            })
            .collect();
        Ok(CgroupManager {
            layout,
            placements,
            created: Arc::new(Mutex::new(None)),
        })
    }

    /// What a later command needs to manage this cgroup again: where it is in every hierarchy
    /// (a relative cgroupsPath resolves against the cgroup of the process that created it) and
    /// which directories `create` made.
    pub fn save(&self) -> SavedCgroup {
        SavedCgroup {
            layout: self.layout,
            placements: self.placements.clone(),
            created: self.created_dirs(),
        }
    }

    /// Rebuilds the manager saved by [`CgroupManager::save`].
    pub fn restore(saved: SavedCgroup) -> Self {
        CgroupManager {
            layout: saved.layout,
            placements: saved.placements,
            created: Arc::new(Mutex::new(Some(saved.created))),
        }
    }

    /// Tells a manager built in a later process which directories `create` made (as saved from
    /// [`CgroupManager::created_dirs`]), so `remove` can delete exactly those.
    pub fn with_created_dirs(self, dirs: Vec<PathBuf>) -> Self {
        *self.lock_created() = Some(dirs);
        self
    }

    /// Directories `create` made, top first (to keep in the container's state).
    pub fn created_dirs(&self) -> Vec<PathBuf> {
        self.lock_created().clone().unwrap_or_default()
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn lock_created(&self) -> std::sync::MutexGuard<'_, Option<Vec<PathBuf>>> {
        // A panic while holding the lock cannot leave the list half-written: recover it.
        self.created
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates the container's cgroup in every hierarchy. On failure, removes what it created.
    pub fn create(&self) -> Result<(), CgroupError> {
        let mut made = Vec::new();
        for p in &self.placements {
            let mount = &p.hierarchy.mount;
            let result = match &p.hierarchy.kind {
                HierarchyKind::V1 { .. } => {
                    v1::create(mount, &p.rel, p.hierarchy.has_controller("cpuset"))
                }
                HierarchyKind::Named(_) => tree::create_levels(mount, &p.rel),
                HierarchyKind::Unified => v2::create(mount, &p.rel, self.layout == Layout::V2),
            };
            match result {
                Ok(dirs) => made.extend(dirs),
                Err(e) => {
                    for dir in made.iter().rev() {
                        let _ = tree::remove_dir(dir);
                    }
                    return Err(e);
                }
            }
        }
        self.lock_created()
            .get_or_insert_with(Vec::new)
            .extend(made);
        Ok(())
    }

    /// Writes every field of `r` to the hierarchy owning its controller.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        resources::apply(self, r)
    }

    /// Moves `pid` into the container's cgroup in every hierarchy.
    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        for p in &self.placements {
            fsio::append(&p.dir, "cgroup.procs", &pid.to_string(), "cgroup.procs")?;
        }
        Ok(())
    }

    /// Freezes every process of the container and waits until the kernel confirms.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            (Version::V1, dir) => v1::freeze(&dir),
            (Version::V2, dir) => v2::freeze(&dir),
        }
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            (Version::V1, dir) => v1::thaw(&dir),
            (Version::V2, dir) => v2::thaw(&dir),
        }
    }

    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self.freezer()? {
            (Version::V1, dir) => v1::is_frozen(&dir),
            (Version::V2, dir) => v2::is_frozen(&dir),
        }
    }

    /// The v1 freezer hierarchy, else the cgroup2 one (whose cgroup.freeze needs no controller).
    fn freezer(&self) -> Result<(Version, PathBuf), CgroupError> {
        if let Some(p) = self
            .placements
            .iter()
            .find(|p| p.hierarchy.has_controller("freezer"))
        {
            return Ok((Version::V1, p.dir.clone()));
        }
        if let Some(p) = self.placements.iter().find(|p| p.hierarchy.is_unified()) {
            return Ok((Version::V2, p.dir.clone()));
        }
        Err(CgroupError::unsupported(
            "freezer",
            "no freezer hierarchy and no cgroup2 hierarchy on this host",
        ))
    }

    /// Every pid in the container's cgroup, including nested cgroups.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        // Any hierarchy sees all processes; prefer ones every v1 host has, then cgroup2.
        let preferred = ["pids", "freezer", "memory", "cpu", "devices"];
        let chosen = preferred
            .iter()
            .find_map(|c| {
                self.placements
                    .iter()
                    .find(|p| p.hierarchy.has_controller(c))
            })
            .or_else(|| self.placements.iter().find(|p| p.hierarchy.is_unified()))
            .or_else(|| self.placements.first());
        match chosen {
            Some(p) => tree::pids_recursive(&p.dir),
            None => Ok(Vec::new()),
        }
    }

    /// Usage and limits of the container's cgroup.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        stats::collect(&|controller| self.locate(controller))
    }

    /// Removes the directories `create` made, deepest first; kills nothing. A missing directory
    /// is fine; a parent still used by other containers stays. Without a record of what was
    /// created (a manager built afresh without [`CgroupManager::with_created_dirs`]) only the
    /// container's own cgroup directories are removed.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let leaves: Vec<PathBuf> = self.hierarchy_paths();
        let targets = self
            .lock_created()
            .clone()
            .unwrap_or_else(|| leaves.clone());
        let mut first_error = None;
        for dir in targets.iter().rev() {
            // Shared parents (e.g. /runvm) still holding other containers are not ours alone.
            if !leaves.contains(dir) {
                tree::remove_shared_parent(dir);
                continue;
            }
            if let Err(e) = tree::remove_dir(dir) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => {
                *self.lock_created() = Some(Vec::new());
                Ok(())
            }
        }
    }

    /// One cgroupfs mount source per hierarchy, for mounting /sys/fs/cgroup in the container.
    pub fn mount_sources(&self) -> Vec<CgroupMountSource> {
        self.placements
            .iter()
            .map(|p| CgroupMountSource {
                name: p.hierarchy.name.clone(),
                host_path: p.dir.clone(),
                fstype: if p.hierarchy.is_unified() {
                    "cgroup2"
                } else {
                    "cgroup"
                }
                .to_string(),
                options: p.hierarchy.mount_options(),
            })
            .collect()
    }

    /// The container's cgroup directory in every hierarchy.
    pub fn hierarchy_paths(&self) -> Vec<PathBuf> {
        self.placements.iter().map(|p| p.dir.clone()).collect()
    }

    fn unified(&self) -> Option<&Placement> {
        self.placements.iter().find(|p| p.hierarchy.is_unified())
    }

    /// The hierarchy owning `controller` (a v1 one first, then cgroup2 if its root offers it),
    /// without changing anything.
    fn locate(&self, controller: &str) -> Option<Target> {
        if let Some(p) = self
            .placements
            .iter()
            .find(|p| p.hierarchy.has_controller(controller))
        {
            return Some(Target {
                dir: p.dir.clone(),
                version: Version::V1,
            });
        }
        let unified = self.unified()?;
        let offered = v2::offers_controller(&unified.hierarchy.mount, controller).unwrap_or(false);
        offered.then(|| Target {
            dir: unified.dir.clone(),
            version: Version::V2,
        })
    }
}

impl Controllers for CgroupManager {
    fn target(&self, controller: &str) -> Result<Option<Target>, CgroupError> {
        let target = self.locate(controller);
        if matches!(&target, Some(t) if t.version == Version::V2) {
            self.enable_unified(controller)?;
        }
        Ok(target)
    }

    fn unified_dir(&self) -> Option<PathBuf> {
        self.unified().map(|p| p.dir.clone())
    }

    fn enable_unified(&self, controller: &str) -> Result<(), CgroupError> {
        let Some(unified) = self.unified() else {
            return Err(CgroupError::unsupported(
                controller,
                "this host has no cgroup2 hierarchy",
            ));
        };
        let mount = &unified.hierarchy.mount;
        if !v2::offers_controller(mount, controller)? {
            return Err(CgroupError::unsupported(
                controller,
                format!(
                    "the cgroup2 hierarchy at {} does not offer the {controller} controller",
                    mount.display()
                ),
            ));
        }
        v2::enable_controller(mount, &unified.rel, controller)
    }
}
