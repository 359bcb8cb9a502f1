//! Host mode's command line: `runvm-agent --channel unix:PATH|fd:N --state-dir DIR`.
//! Two flags do not justify an argument-parsing crate in a binary that is PID 1 of every VM.

use std::path::PathBuf;

#[derive(Debug, PartialEq, Eq)]
pub enum ChannelArg {
    /// Connect to a listening Unix socket.
    Unix(PathBuf),
    /// An inherited, already connected descriptor.
    Fd(i32),
}

#[derive(Debug, PartialEq, Eq)]
pub struct HostArgs {
    pub channel: ChannelArg,
    pub state_dir: PathBuf,
}

pub const USAGE: &str = "usage: runvm-agent --channel unix:PATH|fd:N --state-dir DIR";

pub fn parse(args: &[String]) -> Result<HostArgs, String> {
    let mut channel = None;
    let mut state_dir = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "--channel" => channel = Some(parse_channel(&value()?)?),
            "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    Ok(HostArgs {
        channel: channel.ok_or_else(|| format!("--channel is required; {USAGE}"))?,
        state_dir: state_dir.ok_or_else(|| format!("--state-dir is required; {USAGE}"))?,
    })
}

fn parse_channel(text: &str) -> Result<ChannelArg, String> {
    if let Some(path) = text.strip_prefix("unix:").filter(|p| !p.is_empty()) {
        return Ok(ChannelArg::Unix(PathBuf::from(path)));
    }
    if let Some(n) = text.strip_prefix("fd:") {
        return n
            .parse()
            .map(ChannelArg::Fd)
            .map_err(|_| format!("--channel fd:{n}: not a descriptor number"));
    }
    Err(format!("--channel {text:?}: expected unix:PATH or fd:N"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_both_channel_forms() {
        let got = parse(&args(&[
            "--channel",
            "unix:/tmp/s",
            "--state-dir",
            "/tmp/d",
        ]))
        .unwrap();
        assert_eq!(got.channel, ChannelArg::Unix("/tmp/s".into()));
        assert_eq!(got.state_dir, PathBuf::from("/tmp/d"));
        let got = parse(&args(&["--state-dir", "d", "--channel", "fd:5"])).unwrap();
        assert_eq!(got.channel, ChannelArg::Fd(5));
    }

    #[test]
    fn bad_arguments_name_the_problem() {
        let err = |a: &[&str]| parse(&args(a)).unwrap_err();
        assert!(err(&["--channel", "tcp:1", "--state-dir", "d"]).contains("tcp:1"));
        assert!(err(&["--channel", "fd:x", "--state-dir", "d"]).contains("fd:x"));
        assert!(err(&["--state-dir", "d"]).contains("--channel is required"));
        assert!(err(&["--channel"]).contains("needs a value"));
        assert!(err(&["--bogus"]).contains("--bogus"));
    }
}
