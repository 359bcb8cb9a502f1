//! linux.resources.blockIO → blkio.* (v1) or io.* (v2).
//!
//! Kernels without CFQ (all 6.x) have no blkio.weight; the BFQ scheduler offers
//! blkio.bfq.weight instead. Whichever exists is used.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use super::{Target, Version};
use crate::cgroups::error::CgroupError;
use crate::cgroups::fsio;

fn field(name: &str) -> String {
    format!("linux.resources.blockIO.{name}")
}

/// The first of `files` that exists in `dir`, or an error naming `name` and all candidates.
fn first_existing<'a>(dir: &Path, files: &[&'a str], name: &str) -> Result<&'a str, CgroupError> {
    files
        .iter()
        .copied()
        .find(|f| fsio::exists(dir, f))
        .ok_or_else(|| {
            CgroupError::unsupported(
                field(name),
                format!("none of {} exists in {}", files.join(", "), dir.display()),
            )
        })
}

/// v1 blkio weights (10..=1000) mapped linearly onto v2 io.weight (1..=10000).
pub(crate) fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + ((weight - 10) * 9999) / 990
}

pub(super) fn apply(t: &Target, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    match t.version {
        Version::V1 => apply_v1(&t.dir, b),
        Version::V2 => apply_v2(&t.dir, b),
    }
}

fn apply_v1(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    if let Some(weight) = b.weight().filter(|w| *w != 0) {
        let file = first_existing(dir, &["blkio.weight", "blkio.bfq.weight"], "weight")?;
        fsio::write(dir, file, &weight.to_string(), &field("weight"))?;
    }
    if let Some(leaf) = b.leaf_weight().filter(|w| *w != 0) {
        let file = first_existing(dir, &["blkio.leaf_weight"], "leafWeight")?;
        fsio::write(dir, file, &leaf.to_string(), &field("leafWeight"))?;
    }
    for (index, device) in b.weight_device().iter().flatten().enumerate() {
        let id = format!("{}:{}", device.major(), device.minor());
        if let Some(weight) = device.weight().filter(|w| *w != 0) {
            let name = format!("weightDevice[{index}].weight");
            let file = first_existing(
                dir,
                &["blkio.weight_device", "blkio.bfq.weight_device"],
                &name,
            )?;
            fsio::write(dir, file, &format!("{id} {weight}"), &field(&name))?;
        }
        if let Some(leaf) = device.leaf_weight().filter(|w| *w != 0) {
            let name = format!("weightDevice[{index}].leafWeight");
            let file = first_existing(dir, &["blkio.leaf_weight_device"], &name)?;
            fsio::write(dir, file, &format!("{id} {leaf}"), &field(&name))?;
        }
    }
    for (name, file, devices) in throttles(b) {
        for (index, d) in devices.iter().enumerate() {
            let line = format!("{}:{} {}", d.major(), d.minor(), d.rate());
            fsio::write(dir, file, &line, &field(&format!("{name}[{index}]")))?;
        }
    }
    Ok(())
}

fn list(l: &Option<Vec<LinuxThrottleDevice>>) -> &[LinuxThrottleDevice] {
    l.as_deref().unwrap_or(&[])
}

/// (OCI field name, v1 file, devices) for the four throttle lists.
fn throttles(b: &LinuxBlockIo) -> [(&'static str, &'static str, &[LinuxThrottleDevice]); 4] {
    [
        (
            "throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            list(b.throttle_read_bps_device()),
        ),
        (
            "throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            list(b.throttle_write_bps_device()),
        ),
        (
            "throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            list(b.throttle_read_iops_device()),
        ),
        (
            "throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            list(b.throttle_write_iops_device()),
        ),
    ]
}

/// The io.max key for a v1 throttle file.
fn io_max_key(v1_file: &str) -> &'static str {
    match v1_file {
        "blkio.throttle.read_bps_device" => "rbps",
        "blkio.throttle.write_bps_device" => "wbps",
        "blkio.throttle.read_iops_device" => "riops",
        _ => "wiops",
    }
}

fn apply_v2(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // io.weight uses the 1..=10000 scale; io.bfq.weight keeps blkio's 1..=1000.
    let weight_file = || first_existing(dir, &["io.weight", "io.bfq.weight"], "weight");
    let scaled = |file: &str, w: u16| {
        if file == "io.weight" {
            blkio_weight_to_io_weight(w)
        } else {
            u64::from(w)
        }
    };
    if let Some(weight) = b.weight().filter(|w| *w != 0) {
        let file = weight_file()?;
        fsio::write(
            dir,
            file,
            &format!("default {}", scaled(file, weight)),
            &field("weight"),
        )?;
    }
    if b.leaf_weight().is_some_and(|w| w != 0) {
        return Err(CgroupError::unsupported(
            field("leafWeight"),
            "cgroup v2 has no leaf weights",
        ));
    }
    for (index, device) in b.weight_device().iter().flatten().enumerate() {
        let id = format!("{}:{}", device.major(), device.minor());
        if let Some(weight) = device.weight().filter(|w| *w != 0) {
            let name = format!("weightDevice[{index}].weight");
            let file = weight_file()?;
            fsio::write(
                dir,
                file,
                &format!("{id} {}", scaled(file, weight)),
                &field(&name),
            )?;
        }
        if device.leaf_weight().is_some_and(|w| w != 0) {
            return Err(CgroupError::unsupported(
                field(&format!("weightDevice[{index}].leafWeight")),
                "cgroup v2 has no leaf weights",
            ));
        }
    }
    for (name, v1_file, devices) in throttles(b) {
        for (index, d) in devices.iter().enumerate() {
            let rate = if d.rate() == 0 {
                "max".to_string()
            } else {
                d.rate().to_string()
            };
            let line = format!("{}:{} {}={rate}", d.major(), d.minor(), io_max_key(v1_file));
            fsio::write(dir, "io.max", &line, &field(&format!("{name}[{index}]")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_scale_ends() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 1 + (490 * 9999) / 990);
    }

    #[test]
    fn missing_weight_files_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let b: LinuxBlockIo = serde_json::from_str(r#"{"weight": 300}"#).unwrap();
        let msg = apply_v1(dir.path(), &b).unwrap_err().to_string();
        assert!(
            msg.starts_with(
                "linux.resources.blockIO.weight: none of blkio.weight, blkio.bfq.weight"
            ),
            "{msg}"
        );
        std::fs::write(dir.path().join("blkio.bfq.weight"), "100").unwrap();
        apply_v1(dir.path(), &b).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("blkio.bfq.weight")).unwrap(),
            "300"
        );
    }
}
