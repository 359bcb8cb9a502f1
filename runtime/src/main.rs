//! The `runvm` binary: parse arguments, call the engine, print results, map errors to exit codes.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use runvm_runtime::cli::{Cli, Command, CreateArgs, ListFormat};
use runvm_runtime::container::{Store, StoreError};
use runvm_runtime::lifecycle::{self, CreateOptions, Error};
use runvm_runtime::{logging, selfexe};

mod console_proxy;
mod control_cmd;
mod exec_cmd;
mod foreground;
mod run;
mod spec_cmd;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            logging::error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<u8> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup: runvm drives cgroupfs directly; the systemd cgroup driver is not supported");
    }
    let store = Store::new(&cli.root);
    match cli.command {
        Command::Create(args) => {
            selfexe::ensure_sealed()?;
            lifecycle::create(&store, &create_options(args))?;
            Ok(0)
        }
        Command::Run {
            create,
            detach,
            keep,
        } => {
            selfexe::ensure_sealed()?;
            run::run(&store, &create_options(create), detach, keep)
        }
        Command::Start { id } => {
            let dir = store.open(&id)?;
            let mut state = dir.load()?;
            lifecycle::start(&dir, &mut state)?;
            Ok(0)
        }
        Command::State { id } => {
            let dir = store.open(&id)?;
            let (state, status) = lifecycle::container_state(&dir)?;
            print_out(&serde_json::to_string_pretty(&state.to_oci(status))?);
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let signal = lifecycle::parse_signal(&signal)?;
            let dir = store.open(&id)?;
            let state = dir.load()?;
            lifecycle::kill(&dir, &state, signal, all)?;
            Ok(0)
        }
        Command::Delete { force, id } => {
            let dir = match store.open(&id) {
                Ok(dir) => dir,
                // containerd calls `delete --force` on ids that may be gone: that is success.
                Err(StoreError::NotFound(_)) if force => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            match dir.load() {
                Ok(state) => lifecycle::delete(dir, &state, force)?,
                // A create killed before it wrote state.json: nothing else of it can exist.
                Err(_) if force => dir.remove()?,
                Err(e) => return Err(Error::from(e)).context("delete"),
            }
            Ok(0)
        }
        Command::Exec(args) => {
            selfexe::ensure_sealed()?;
            exec_cmd::exec(&store, args)
        }
        Command::Pause { id } => {
            let dir = store.open(&id)?;
            lifecycle::pause(&dir, &dir.load()?)?;
            Ok(0)
        }
        Command::Resume { id } => {
            let dir = store.open(&id)?;
            lifecycle::resume(&dir, &dir.load()?)?;
            Ok(0)
        }
        Command::Ps { format, id } => {
            control_cmd::ps(&store, &id, format)?;
            Ok(0)
        }
        Command::Update(args) => {
            control_cmd::update(&store, &args)?;
            Ok(0)
        }
        Command::Events {
            stats,
            interval,
            id,
        } => {
            control_cmd::events(&store, &id, stats, interval)?;
            Ok(0)
        }
        Command::Checkpoint { .. } | Command::Restore { .. } => {
            bail!("checkpoint and restore are not supported by runvm (it has no CRIU integration)")
        }
        Command::List { format, quiet } => {
            list(&store, format, quiet)?;
            Ok(0)
        }
        Command::Spec { bundle, rootless } => {
            spec_cmd::write_spec(&bundle, rootless)?;
            Ok(0)
        }
        Command::Check {
            format,
            no_calibrate,
        } => {
            let report = runvm_runtime::check::check(!no_calibrate);
            match format {
                ListFormat::Json => print_out(&serde_json::to_string_pretty(&report)?),
                ListFormat::Table => print_out(report.to_text().trim_end()),
            }
            Ok(0)
        }
        Command::Features => {
            print_out(&serde_json::to_string_pretty(
                &runvm_runtime::features::features(),
            )?);
            Ok(0)
        }
    }
}

/// Prints a line to stdout; a reader that went away (`runvm state x | head -1`) is no error.
fn print_out(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn create_options(args: CreateArgs) -> CreateOptions {
    CreateOptions {
        id: args.id,
        bundle: args.bundle,
        console_socket: args.console_socket,
        console_stream: None,
        pid_file: args.pid_file,
        no_pivot: args.no_pivot,
        no_new_keyring: args.no_new_keyring,
        preserve_fds: args.preserve_fds,
        stdio: None,
        isolation: args.isolation,
        invoked_as: std::env::args_os()
            .next()
            .and_then(|argv0| runvm_runtime::isolation::class_of_program(&argv0)),
    }
}

fn list(store: &Store, format: ListFormat, quiet: bool) -> Result<()> {
    let containers = lifecycle::list(store)?;
    if quiet {
        for c in &containers {
            print_out(&c.state.id);
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => {
            let all: Vec<_> = containers
                .iter()
                .map(|c| c.state.to_oci(c.status))
                .collect();
            print_out(&serde_json::to_string(&all)?);
        }
        ListFormat::Table => {
            print_out(&format!(
                "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            ));
            for c in &containers {
                let v = c.state.to_oci(c.status);
                print_out(&format!(
                    "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
                    c.state.id,
                    v["pid"].to_string(),
                    c.status.to_string(),
                    c.state.bundle.display(),
                    c.state.created,
                    v["owner"].as_str().unwrap_or("")
                ));
            }
        }
    }
    Ok(())
}
