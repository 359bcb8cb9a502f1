//! `runvm exec`: build the process (from --process or from the container's own process with
//! the command-line overrides), start it, and wait for it unless --detach.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Capability, Process};
use runvm_runtime::cli::ExecArgs;
use runvm_runtime::container::Store;
use runvm_runtime::lifecycle::{self, ExecOptions};

use crate::{console_proxy, foreground};

pub fn exec(store: &Store, args: ExecArgs) -> Result<u8> {
    let dir = store.open(&args.id)?;
    let state = dir.load()?;
    let process = build_process(&state.bundle, &args)?;
    let mask = if args.detach {
        nix::sys::signal::SigSet::empty()
    } else {
        foreground::block_signals()?
    };
    let mut process = process;
    let terminal = process.terminal().unwrap_or(false);
    let proxy = if terminal && args.console_socket.is_none() {
        if args.detach {
            bail!("--tty with --detach needs --console-socket");
        }
        // The process sets up its pty before it runs: give it our terminal's size now.
        if let Some(size) = console_proxy::stdin_window_size() {
            process.set_console_size(Some(size));
        }
        Some(UnixStream::pair()?)
    } else {
        None
    };
    let opts = ExecOptions {
        process,
        console_socket: args.console_socket.clone(),
        console_stream: proxy
            .as_ref()
            .map(|(_, theirs)| theirs.try_clone().map(Arc::new))
            .transpose()?,
        pid_file: args.pid_file.clone(),
        preserve_fds: args.preserve_fds,
        stdio: None,
    };
    let launched = lifecycle::exec(&dir, &state, &opts)?;
    // The container stays reachable by other commands while this process runs.
    drop(dir);
    if args.detach {
        return Ok(0);
    }
    let master = match &proxy {
        Some((ours, _)) => Some(std::fs::File::from(
            runvm_runtime::process::console::receive_master(ours)?,
        )),
        None => None,
    };
    foreground::wait_for_exit(&launched, &mask, master)
}

/// The process to run: a process.json as given, or the container's own process with the
/// command, env, cwd, user, groups, capabilities and terminal of the command line.
fn build_process(bundle: &Path, args: &ExecArgs) -> Result<Process> {
    if let Some(path) = &args.process {
        let text = std::fs::read(path).with_context(|| format!("--process {}", path.display()))?;
        return Ok(runvm_oci::parse_process(&text, path)?);
    }
    if args.command.is_empty() {
        bail!("exec needs a command or --process");
    }
    let spec = runvm_oci::load_spec(&bundle.join(runvm_oci::CONFIG_FILE))?;
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.tty));
    let mut env = process.env().clone().unwrap_or_default();
    env.extend(args.env.iter().cloned());
    process.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    if let Some(user) = &args.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let user_mut = process.user_mut();
        user_mut.set_uid(
            uid.parse()
                .with_context(|| format!("--user {user}: uid must be a number"))?,
        );
        if let Some(g) = gid {
            user_mut.set_gid(
                g.parse()
                    .with_context(|| format!("--user {user}: gid must be a number"))?,
            );
        }
    }
    if !args.additional_gids.is_empty() {
        process
            .user_mut()
            .set_additional_gids(Some(args.additional_gids.clone()));
    }
    if args.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    if !args.caps.is_empty() {
        let mut caps = process.capabilities().clone().unwrap_or_default();
        for name in &args.caps {
            let cap: Capability = name
                .trim_start_matches("CAP_")
                .parse()
                .with_context(|| format!("--cap {name}: unknown capability"))?;
            let add = |set: Option<oci_spec::runtime::Capabilities>| {
                let mut set = set.unwrap_or_default();
                set.insert(cap);
                Some(set)
            };
            let bounding = add(caps.bounding().clone());
            let effective = add(caps.effective().clone());
            let permitted = add(caps.permitted().clone());
            caps.set_bounding(bounding);
            caps.set_effective(effective);
            caps.set_permitted(permitted);
        }
        process.set_capabilities(Some(caps));
    }
    Ok(process)
}
