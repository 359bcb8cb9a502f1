//! `create`: claim the id, build the cgroup, launch init and record the state. Every step that
//! can fail runs under a guard that undoes the ones before it, so a failed `create` leaves no
//! cgroup, state directory, mount or process behind.

use std::path::PathBuf;
use std::time::SystemTime;

use runvm_oci::{load_bundle, validate_id, ContainerState, HookSet, IsolationClass, Status};

use super::Error;
use crate::cgroups::{self, CgroupManager};
use crate::container::{proc_start_time, ContainerDir, Store};
use crate::fault;
use crate::process::launch::{LaunchRequest, Launched};

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    /// An already connected console socket (foreground `run` proxies the pty itself).
    pub console_stream: Option<std::sync::Arc<std::os::unix::net::UnixStream>>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// Descriptors for init's stdin, stdout and stderr (e.g. a shim's FIFOs); `None` keeps the
    /// caller's own. The caller keeps them open until `create` returns.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// `--isolation`: the class asked for on the command line.
    pub isolation: Option<IsolationClass>,
    /// The class the executable's name stands for (a `runvm-vm` link).
    pub invoked_as: Option<IsolationClass>,
}

/// A created container whose init waits for `start`. Holds the state-dir lock.
#[derive(Debug)]
pub struct Created {
    pub dir: ContainerDir,
    pub state: ContainerState,
    pub init: Launched,
}

/// Undoes a partial create unless disarmed.
struct Undo {
    dir: Option<ContainerDir>,
    cgroup: Option<CgroupManager>,
    /// A rootfs init may have mounted on in the host's mount namespace.
    host_rootfs: Option<PathBuf>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(rootfs) = self.host_rootfs.take() {
            if let Err(e) = crate::rootfs::unmount_shared(&rootfs) {
                crate::logging::warn(&format!("cleanup after failed create: {e}"));
            }
        }
        if let Some(cgroup) = self.cgroup.take() {
            if let Err(e) = cgroup.remove() {
                crate::logging::warn(&format!("cleanup after failed create: {e}"));
            }
        }
        if let Some(dir) = self.dir.take() {
            if let Err(e) = dir.remove() {
                crate::logging::warn(&format!("cleanup after failed create: {e}"));
            }
        }
    }
}

pub fn create(store: &Store, opts: &CreateOptions) -> Result<Created, Error> {
    validate_id(&opts.id)?;
    let bundle = load_bundle(&opts.bundle)?;
    let settings = crate::isolation::RuntimeConfig::load()?;
    let isolation = crate::isolation::choose(
        opts.isolation,
        bundle.spec.annotations().as_ref(),
        opts.invoked_as,
        &settings,
    )?;
    let engine = crate::engine::for_class(isolation, &settings);
    engine.validate(&bundle.spec)?;
    let linux = bundle.spec.linux().as_ref();
    let layout = cgroups::detect_layout()?;
    let cgroup = CgroupManager::new(
        layout,
        linux.and_then(|l| l.cgroups_path().as_deref()),
        &opts.id,
    )?;

    let shares_host_mounts = engine.mounts_on_host(&bundle.spec);
    let mut undo = Undo {
        dir: Some(store.create(&opts.id)?),
        cgroup: None,
        host_rootfs: None,
    };
    fault::point("create:after-state-dir");
    cgroup.create()?;
    undo.cgroup = Some(cgroup.clone());
    let dir = undo
        .dir
        .as_ref()
        .ok_or_else(|| Error::Setup("state dir lost".into()))?;

    // Recorded before anything else can outlive this process (cgroup, init, host mounts), and
    // again once init exists: a create killed at any point leaves a state that `delete --force`
    // can clean up from.
    let hooks = bundle.spec.hooks().as_ref();
    let mut state = ContainerState {
        oci_version: bundle.spec.version().clone(),
        id: opts.id.clone(),
        status: Status::Creating,
        pid: 0,
        pid_start_time: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
        created: humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
        owner: nix::unistd::geteuid().as_raw(),
        cgroup_path: linux
            .and_then(|l| l.cgroups_path().clone())
            .unwrap_or_default(),
        cgroup: serde_json::to_value(cgroup.save())
            .map_err(|e| Error::Setup(format!("recording the cgroup: {e}")))?,
        hooks: HookSet {
            poststart: hooks
                .and_then(|h| h.poststart().clone())
                .unwrap_or_default(),
            poststop: hooks.and_then(|h| h.poststop().clone()).unwrap_or_default(),
        },
        rootfs_mounted_on_host: shares_host_mounts,
        isolation,
    };
    dir.save(&state)?;
    fault::point("create:after-cgroup");
    cgroup.apply(&engine.host_resources(&bundle.spec))?;
    if shares_host_mounts {
        undo.host_rootfs = Some(bundle.rootfs.clone());
    }

    let start_time = std::cell::Cell::new(0);
    let record_init = |pid: i32| -> Result<(), String> {
        let mut spawned = state.clone();
        spawned.pid = pid;
        spawned.pid_start_time = proc_start_time(pid).map_or(0, |(start, _)| start);
        start_time.set(spawned.pid_start_time);
        dir.save(&spawned).map_err(|e| e.to_string())?;
        fault::point("create:after-clone");
        Ok(())
    };
    let init = engine.launch(&LaunchRequest {
        bundle: &bundle,
        id: &opts.id,
        dir,
        cgroup: &cgroup,
        console_socket: opts.console_socket.as_deref(),
        console_stream: opts.console_stream.as_deref(),
        no_pivot: opts.no_pivot,
        no_new_keyring: opts.no_new_keyring,
        preserve_fds: opts.preserve_fds,
        on_spawned: &record_init,
        stdio: opts.stdio,
    })?;
    fault::point("create:after-ready");

    state.status = Status::Created;
    state.pid = init.pid;
    state.pid_start_time = start_time.get();
    let recorded = dir
        .save(&state)
        .map_err(Error::from)
        .and_then(|()| match &opts.pid_file {
            Some(pid_file) => write_pid_file(pid_file, init.pid),
            None => Ok(()),
        });
    if let Err(e) = recorded {
        init.kill_and_reap();
        return Err(e);
    }
    let dir = undo
        .dir
        .take()
        .ok_or_else(|| Error::Setup("state dir lost".into()))?;
    undo.cgroup = None;
    undo.host_rootfs = None;
    Ok(Created { dir, state, init })
}

/// Written atomically: clients poll for this file and must never read half a pid.
pub(super) fn write_pid_file(path: &std::path::Path, pid: i32) -> Result<(), Error> {
    let tmp = path.with_extension("runvm-tmp");
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::Setup(format!("--pid-file {}: {e}", path.display())))
}
