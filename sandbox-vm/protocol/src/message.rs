//! The JSON messages carried in Message frames.

use serde::{Deserialize, Serialize};

/// The version of this protocol; `Hello` must carry exactly this one.
pub const PROTOCOL_VERSION: u32 = 1;

/// One request from the host; answered by one [`Reply`] with the same `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestBody {
    Hello {
        version: u32,
    },
    SetClock {
        unix_secs: i64,
        nanos: u32,
    },
    CreateContainer {
        container_id: String,
        /// The whole config.json to use in the guest; `root.path` is absolute in the guest.
        config: serde_json::Value,
        stream: u32,
        stdio: Stdio,
    },
    StartContainer {
        container_id: String,
    },
    Exec {
        container_id: String,
        /// An OCI runtime-spec `process` object.
        process: serde_json::Value,
        stream: u32,
        stdio: Stdio,
    },
    Signal {
        container_id: String,
        /// `None`: the container's init.
        stream: Option<u32>,
        signal: i32,
        /// Every process of the container.
        all: bool,
    },
    ResizeTty {
        stream: u32,
        rows: u16,
        cols: u16,
    },
    Processes {
        container_id: String,
    },
    DeleteContainer {
        container_id: String,
    },
    Shutdown,
}

/// How a container process gets its stdin, stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stdio {
    /// stdout and stderr are pipes; stdin a pipe when `stdin`, else /dev/null.
    Pipes { stdin: bool },
    /// One pseudo-terminal of this size; its output comes as fd 1.
    Tty { rows: u16, cols: u16 },
}

/// The answer to the request with the same `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: u64,
    pub result: Result<ReplyBody, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyBody {
    Hello {
        version: u32,
        agent_version: String,
        kernel_release: String,
        boot_id: String,
    },
    Done,
    Created {
        pid: i32,
    },
    Started {
        pid: i32,
    },
    Processes {
        pids: Vec<i32>,
    },
}

/// Everything the agent sends in Message frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMessage {
    Reply(Reply),
    /// A stream's process ended; sent after all of its stdout/stderr data, EOFs included.
    /// `status`: the exit code, or 128 + the signal that killed it.
    Exited {
        stream: u32,
        status: i32,
    },
}

/// Whether the host's `Hello { version }` can be served; the error names both versions.
pub fn check_version(host_version: u32) -> Result<(), String> {
    if host_version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(format!(
            "the host speaks agent protocol version {host_version}, this agent speaks version {PROTOCOL_VERSION}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_stable() {
        let req = Request {
            id: 1,
            body: RequestBody::Hello { version: 1 },
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"id":1,"body":{"hello":{"version":1}}}"#
        );
        let reply = AgentMessage::Reply(Reply {
            id: 1,
            result: Ok(ReplyBody::Done),
        });
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"reply":{"id":1,"result":{"Ok":"done"}}}"#
        );
        let shutdown: Request = serde_json::from_str(r#"{"id":9,"body":"shutdown"}"#).unwrap();
        assert_eq!(shutdown.body, RequestBody::Shutdown);
    }

    #[test]
    fn version_check_names_both_versions() {
        assert!(check_version(PROTOCOL_VERSION).is_ok());
        let err = check_version(7).unwrap_err();
        assert!(
            err.contains('7') && err.contains(&PROTOCOL_VERSION.to_string()),
            "{err}"
        );
    }
}
