//! `ps`, `update` and `events`: reading and changing a live container's cgroup from the CLI.

use std::io::Read;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use runvm_oci::Status;
use runvm_runtime::cli::{ListFormat, UpdateArgs};
use runvm_runtime::container::Store;
use runvm_runtime::lifecycle;

use crate::print_out;

pub fn ps(store: &Store, id: &str, format: ListFormat) -> Result<()> {
    let dir = store.open(id)?;
    let state = dir.load()?;
    let pids = lifecycle::pids(&state)?;
    match format {
        ListFormat::Json => print_out(&serde_json::to_string(&pids)?),
        ListFormat::Table => {
            print_out(&format!("{:<8} CMD", "PID"));
            for pid in pids {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| {
                        String::from_utf8_lossy(&c)
                            .replace('\0', " ")
                            .trim()
                            .to_string()
                    })
                    .unwrap_or_default();
                print_out(&format!("{pid:<8} {cmd}"));
            }
        }
    }
    Ok(())
}

/// "512k", "100M", "1g", "4096" or "-1" (no limit), in bytes.
fn parse_bytes(flag: &str, text: &str) -> Result<i64> {
    let text = text.trim();
    if text == "-1" {
        return Ok(-1);
    }
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let base: i64 = digits
        .parse()
        .with_context(|| format!("--{flag} {text}: not a size"))?;
    let shift = match unit.to_ascii_lowercase().trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => bail!("--{flag} {text}: unknown unit {unit:?} (use k, m, g or t)"),
    };
    base.checked_mul(1 << shift)
        .with_context(|| format!("--{flag} {text}: too large"))
}

fn read_resources(path: &std::path::Path) -> Result<LinuxResources> {
    let mut text = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut text)?;
    } else {
        text = std::fs::read(path).with_context(|| format!("--resources {}", path.display()))?;
    }
    let mut de = serde_json::Deserializer::from_slice(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        anyhow::anyhow!(
            "--resources {}: {field}: {}",
            path.display(),
            e.into_inner()
        )
    })
}

/// The resources to apply: the --resources document with the flags laid over it.
fn resources_of(args: &UpdateArgs) -> Result<LinuxResources> {
    let mut r = match &args.resources {
        Some(path) => read_resources(path)?,
        None => LinuxResources::default(),
    };
    if args.memory.is_some() || args.memory_reservation.is_some() || args.memory_swap.is_some() {
        let mut m: LinuxMemory = r.memory().unwrap_or_default();
        if let Some(v) = &args.memory {
            m.set_limit(Some(parse_bytes("memory", v)?));
        }
        if let Some(v) = &args.memory_reservation {
            m.set_reservation(Some(parse_bytes("memory-reservation", v)?));
        }
        if let Some(v) = &args.memory_swap {
            m.set_swap(Some(parse_bytes("memory-swap", v)?));
        }
        r.set_memory(Some(m));
    }
    if let Some(limit) = args.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        r.set_pids(Some(p));
    }
    let cpu_flags = args.cpu_quota.is_some()
        || args.cpu_period.is_some()
        || args.cpu_shares.is_some()
        || args.cpu_rt_runtime.is_some()
        || args.cpu_rt_period.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some();
    if cpu_flags {
        let mut c: LinuxCpu = r.cpu().clone().unwrap_or_default();
        if args.cpu_quota.is_some() {
            c.set_quota(args.cpu_quota);
        }
        if args.cpu_period.is_some() {
            c.set_period(args.cpu_period);
        }
        if args.cpu_shares.is_some() {
            c.set_shares(args.cpu_shares);
        }
        if args.cpu_rt_runtime.is_some() {
            c.set_realtime_runtime(args.cpu_rt_runtime);
        }
        if args.cpu_rt_period.is_some() {
            c.set_realtime_period(args.cpu_rt_period);
        }
        if args.cpuset_cpus.is_some() {
            c.set_cpus(args.cpuset_cpus.clone());
        }
        if args.cpuset_mems.is_some() {
            c.set_mems(args.cpuset_mems.clone());
        }
        r.set_cpu(Some(c));
    }
    if let Some(weight) = args.blkio_weight {
        let mut b = r.block_io().clone().unwrap_or_default();
        b.set_weight(Some(weight));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

pub fn update(store: &Store, args: &UpdateArgs) -> Result<()> {
    let resources = resources_of(args)?;
    let dir = store.open(&args.id)?;
    let state = dir.load()?;
    lifecycle::update(&dir, &state, &resources)?;
    Ok(())
}

/// runc's event shape: {"type":"stats","id":ID,"data":{...}}.
fn stats_event(id: &str, state: &runvm_oci::ContainerState) -> Result<String> {
    let data = lifecycle::stats(state)?;
    Ok(serde_json::json!({"type": "stats", "id": id, "data": data}).to_string())
}

pub fn events(store: &Store, id: &str, once: bool, interval: Duration) -> Result<()> {
    loop {
        // Each round takes the lock only briefly, so other commands are not held up.
        let line = {
            let dir = store.open(id)?;
            let (state, status) = lifecycle::container_state(&dir)?;
            if status == Status::Stopped {
                if once {
                    bail!("container {id:?} is stopped");
                }
                return Ok(());
            }
            stats_event(id, &state)?
        };
        print_out(&line);
        if once {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("m", "4096").unwrap(), 4096);
        assert_eq!(parse_bytes("m", "512k").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("m", "100M").unwrap(), 100 << 20);
        assert_eq!(parse_bytes("m", "2gb").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("m", "-1").unwrap(), -1);
        assert!(parse_bytes("m", "12q").is_err());
        assert!(parse_bytes("m", "x").is_err());
    }
}
