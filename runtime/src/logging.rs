//! Log output: messages go to stderr and, with `--log`, to a file in text or JSON lines.
//!
//! containerd's runc shim reads the JSON form (`{"level","msg","time"}`) to show errors in `ctr`,
//! so that shape is kept exactly.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::cli::LogFormat;

struct Sink {
    file: Option<std::fs::File>,
    format: LogFormat,
    debug: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

/// Sets up logging once, at start-up. A log file that cannot be opened is reported and ignored:
/// the command itself still runs and still reports on stderr.
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) {
    let file = path.and_then(|p| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| eprintln!("runvm: cannot open log file {}: {e}", p.display()))
            .ok()
    });
    let _ = SINK.set(Sink {
        file,
        format,
        debug,
    });
}

pub fn log(level: Level, msg: &str) {
    let Some(sink) = SINK.get() else {
        eprintln!("runvm: {}: {msg}", level.as_str());
        return;
    };
    if level == Level::Debug && !sink.debug {
        return;
    }
    if level != Level::Debug || sink.file.is_none() {
        eprintln!("runvm: {msg}");
    }
    if let Some(mut file) = sink.file.as_ref() {
        let time = humantime::format_rfc3339_nanos(SystemTime::now());
        let line = match sink.format {
            LogFormat::Json => {
                serde_json::json!({"level": level.as_str(), "msg": msg, "time": time.to_string()})
                    .to_string()
            }
            LogFormat::Text => format!("time=\"{time}\" level={} msg={msg:?}", level.as_str()),
        };
        // One write per line keeps lines whole when several runvm processes share a log.
        let _ = file.write_all(format!("{line}\n").as_bytes());
    }
}

pub fn warn(msg: &str) {
    log(Level::Warn, msg);
}

pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}

pub fn error(msg: &str) {
    log(Level::Error, msg);
}
