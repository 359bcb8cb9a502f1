//! Command-line arguments, shaped like runc's so that podman, containerd and Docker can call
//! runvm exactly as they call runc. No logic lives here.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "runvm",
    version,
    about = "An OCI container runtime: containers and KVM sandboxes"
)]
pub struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/runvm")]
    pub root: PathBuf,
    /// Also write log messages to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of the log file.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug messages.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (not available: runvm drives cgroupfs directly).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Path to the bundle directory.
    #[arg(long, short, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Write the container's init pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Use chroot instead of pivot_root (for a rootfs on a ramdisk).
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N extra file descriptors (3..3+N) into the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Isolation class: container (default), vm or emulated; overrides the
    /// runvm.io/isolation annotation and /etc/runvm/config.toml.
    #[arg(long)]
    pub isolation: Option<runvm_oci::IsolationClass>,
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// A process.json (runtime-spec "process") describing what to run; replaces the command.
    #[arg(long, short)]
    pub process: Option<PathBuf>,
    /// Extra environment variables (NAME=VALUE).
    #[arg(long, short)]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// UID[:GID] to run as.
    #[arg(long, short)]
    pub user: Option<String>,
    /// Additional group ids.
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Capabilities to add (e.g. CAP_NET_ADMIN).
    #[arg(long = "cap", short = 'c')]
    pub caps: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Give the process a terminal.
    #[arg(long, short)]
    pub tty: bool,
    /// Unix socket that receives the pty master (with --tty).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs instead of waiting for it.
    #[arg(long, short)]
    pub detach: bool,
    /// Write the process's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Pass N extra file descriptors (3..3+N) into the process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
    /// The command and its arguments (when no --process is given).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// runc's `update` flags; `--resources` gives a whole linux.resources document instead.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// A JSON linux.resources document, or "-" for standard input.
    #[arg(long, short)]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with a k/m/g suffix; -1 for none).
    #[arg(long, short)]
    pub memory: Option<String>,
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit.
    #[arg(long)]
    pub memory_swap: Option<String>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-share")]
    pub cpu_shares: Option<u64>,
    #[arg(long)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Start the user process of a created container.
    Start { id: String },
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal to the container's init (or to all its processes).
    Kill {
        /// Signal every process of the container, not just init.
        #[arg(long, short)]
        all: bool,
        id: String,
        /// Signal name (KILL, SIGKILL) or number.
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and everything runvm made for it.
    Delete {
        /// Kill the container first if it is still running; a missing container is no error.
        #[arg(long, short)]
        force: bool,
        id: String,
    },
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container has started.
        #[arg(long, short)]
        detach: bool,
        /// Keep the stopped container's state (do not delete it).
        #[arg(long)]
        keep: bool,
    },
    /// Run another process in a running container.
    Exec(ExecArgs),
    /// Freeze every process of the container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List the processes of a container.
    Ps {
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        id: String,
    },
    /// Change the resource limits of a container.
    Update(UpdateArgs),
    /// Print container statistics as JSON events (once with --stats, else every --interval).
    Events {
        /// Print the statistics once and exit.
        #[arg(long)]
        stats: bool,
        /// Time between statistics events.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        id: String,
    },
    /// Not supported (no CRIU integration): fails with a clear error, `--help` included, since
    /// podman decides whether checkpointing works from `checkpoint --help`'s exit status.
    #[command(hide = true, disable_help_flag = true)]
    Checkpoint {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Not supported (no CRIU integration).
    #[command(hide = true, disable_help_flag = true)]
    Restore {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List containers.
    #[command(alias = "ps-all")]
    List {
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Print only the ids.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Write a template config.json.
    Spec {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        /// A config for an unprivileged user: user namespace, no network namespace change.
        #[arg(long)]
        rootless: bool,
    },
    /// Print what this build of runvm supports, as a runtime-spec features document.
    Features,
    /// Say what this host can run, for each isolation class.
    Check {
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Skip the tiny-guest speed measurement.
        #[arg(long)]
        no_calibrate: bool,
    },
}
