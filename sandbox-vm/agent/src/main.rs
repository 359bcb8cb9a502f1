//! `runvm-agent`: runvm's guest agent. As a VM's PID 1 it sets the guest up and serves the
//! host over the agent channel (see the `runvm-agent-protocol` crate); with a pid other than
//! 1 it is in host mode, for tests: `runvm-agent --channel unix:PATH|fd:N --state-dir DIR`.

mod args;
mod channel;
mod guest;
mod requests;
mod say;
mod serve;
mod stdio;

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::channel::Channel;
use crate::serve::{Agent, End};

fn main() -> ExitCode {
    if nix::unistd::getpid().as_raw() == 1 {
        guest::run();
    }
    match host_main() {
        Ok(code) => code,
        Err(e) => {
            say::error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn host_main() -> Result<ExitCode> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = args::parse(&argv).map_err(anyhow::Error::msg)?;
    // Before the channel is opened: this may re-execute the agent (an inherited fd:N survives).
    runvm_runtime::selfexe::ensure_sealed().context("re-executing from a read-only copy")?;
    // Orphans of container processes come back to the agent, which reaps them.
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("PR_SET_CHILD_SUBREAPER");
    }
    let channel = match &args.channel {
        args::ChannelArg::Unix(path) => Channel::connect_unix(path),
        args::ChannelArg::Fd(fd) => Channel::inherit(*fd),
    }
    .map_err(anyhow::Error::msg)?;
    let mut agent = Agent::new(channel, args.state_dir, false)?;
    let end = agent.run();
    agent.remove_all();
    Ok(match end {
        End::Shutdown => ExitCode::SUCCESS,
        End::ChannelClosed(why) => {
            say::info(&format!("{why}; containers removed"));
            ExitCode::SUCCESS
        }
        End::Protocol(why) => {
            say::error(&format!("{why}; containers removed"));
            ExitCode::FAILURE
        }
    })
}
