//! The agent's settings on the kernel command line: `runvm.channel=port:NAME|vsock:PORT` and
//! `runvm.share=TAG`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelSpec {
    /// A virtio-serial port with this name (class `emulated`).
    Port(String),
    /// Listen on this AF_VSOCK port and accept one connection (class `vm`).
    Vsock(u32),
}

impl fmt::Display for ChannelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelSpec::Port(name) => write!(f, "virtio-serial port {name:?}"),
            ChannelSpec::Vsock(port) => write!(f, "vsock port {port}"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Cmdline {
    pub channel: ChannelSpec,
    /// The virtio-fs tag to mount at /run/runvm/share.
    pub share: Option<String>,
}

pub fn parse(text: &str) -> Result<Cmdline, String> {
    let mut channel = None;
    let mut share = None;
    for word in text.split_whitespace() {
        if let Some(value) = word.strip_prefix("runvm.channel=") {
            channel = Some(parse_channel(value)?);
        } else if let Some(tag) = word.strip_prefix("runvm.share=") {
            if tag.is_empty() {
                return Err("kernel command line: runvm.share= needs a virtio-fs tag".into());
            }
            share = Some(tag.to_string());
        }
    }
    Ok(Cmdline {
        channel: channel
            .ok_or("kernel command line: no runvm.channel=port:NAME or runvm.channel=vsock:PORT")?,
        share,
    })
}

fn parse_channel(value: &str) -> Result<ChannelSpec, String> {
    if let Some(name) = value.strip_prefix("port:").filter(|n| !n.is_empty()) {
        if name.contains('/') {
            return Err(format!("runvm.channel={value}: a port name has no '/'"));
        }
        return Ok(ChannelSpec::Port(name.to_string()));
    }
    if let Some(port) = value.strip_prefix("vsock:") {
        return port
            .parse()
            .map(ChannelSpec::Vsock)
            .map_err(|_| format!("runvm.channel={value}: {port:?} is not a vsock port number"));
    }
    Err(format!(
        "runvm.channel={value}: expected port:NAME or vsock:PORT"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_channel_and_share() {
        let c = parse("console=ttyS0 quiet runvm.channel=port:runvm.agent runvm.share=rootfs\n")
            .unwrap();
        assert_eq!(c.channel, ChannelSpec::Port("runvm.agent".into()));
        assert_eq!(c.share.as_deref(), Some("rootfs"));
        let c = parse("runvm.channel=vsock:1024").unwrap();
        assert_eq!(c.channel, ChannelSpec::Vsock(1024));
        assert_eq!(c.share, None);
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(parse("quiet").unwrap_err().contains("no runvm.channel"));
        assert!(parse("runvm.channel=vsock:x")
            .unwrap_err()
            .contains("\"x\""));
        assert!(parse("runvm.channel=tcp:1").unwrap_err().contains("tcp:1"));
        assert!(parse("runvm.channel=port:").is_err());
        assert!(parse("runvm.channel=port:../x").is_err());
        assert!(parse("runvm.channel=vsock:1 runvm.share=").is_err());
    }
}
