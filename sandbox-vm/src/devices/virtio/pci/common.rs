//! The virtio-pci common configuration structure (virtio 1.x spec 4.1.4.3): which register a
//! guest access hits, decided from its offset *and* width, so a misaligned or wrongly sized
//! access never reaches a register.

/// The registers of `struct virtio_pci_common_cfg`. 64-bit addresses are accessed as two
/// dword halves (`high` set for the upper one) or as one qword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommonReg {
    DeviceFeatureSelect,
    DeviceFeature,
    DriverFeatureSelect,
    DriverFeature,
    ConfigMsixVector,
    NumQueues,
    DeviceStatus,
    ConfigGeneration,
    QueueSelect,
    QueueSize,
    QueueMsixVector,
    QueueEnable,
    QueueNotifyOff,
    QueueDesc(Half),
    QueueDriver(Half),
    QueueDevice(Half),
}

/// Which part of a 64-bit register an access covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    Low,
    High,
    Both,
}

/// Bytes of the structure the transport implements (up to `queue_device`).
pub const COMMON_CFG_LEN: u64 = 56;

/// The register an access of `len` bytes at `offset` hits, if it is a valid access.
pub fn decode(offset: u64, len: usize) -> Option<CommonReg> {
    use CommonReg::*;
    let reg = match (offset, len) {
        (0, 4) => DeviceFeatureSelect,
        (4, 4) => DeviceFeature,
        (8, 4) => DriverFeatureSelect,
        (12, 4) => DriverFeature,
        (16, 2) => ConfigMsixVector,
        (18, 2) => NumQueues,
        (20, 1) => DeviceStatus,
        (21, 1) => ConfigGeneration,
        (22, 2) => QueueSelect,
        (24, 2) => QueueSize,
        (26, 2) => QueueMsixVector,
        (28, 2) => QueueEnable,
        (30, 2) => QueueNotifyOff,
        (32..=55, 4 | 8) => {
            let half = match (offset % 8, len) {
                (0, 8) => Half::Both,
                (0, 4) => Half::Low,
                (4, 4) => Half::High,
                _ => return None,
            };
            match offset / 8 {
                4 => QueueDesc(half),
                5 => QueueDriver(half),
                _ => QueueDevice(half),
            }
        }
        _ => return None,
    };
    Some(reg)
}

/// Replaces the part `half` of `old` with `value` (the access's little-endian bytes).
pub fn merge(old: u64, half: Half, value: u64) -> u64 {
    match half {
        Half::Low => (old & !0xffff_ffff) | (value & 0xffff_ffff),
        Half::High => (old & 0xffff_ffff) | (value << 32),
        Half::Both => value,
    }
}

/// The part `half` of `value`.
pub fn extract(value: u64, half: Half) -> u64 {
    match half {
        Half::Low => value & 0xffff_ffff,
        Half::High => value >> 32,
        Half::Both => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_decode_only_at_their_offset_and_width() {
        assert_eq!(decode(20, 1), Some(CommonReg::DeviceStatus));
        assert_eq!(decode(20, 2), None);
        assert_eq!(decode(22, 2), Some(CommonReg::QueueSelect));
        assert_eq!(decode(23, 1), None);
        assert_eq!(decode(4, 2), None);
        assert_eq!(decode(36, 4), Some(CommonReg::QueueDesc(Half::High)));
        assert_eq!(decode(40, 8), Some(CommonReg::QueueDriver(Half::Both)));
        assert_eq!(decode(52, 4), Some(CommonReg::QueueDevice(Half::High)));
        assert_eq!(decode(44, 8), None, "misaligned qword");
        assert_eq!(decode(56, 4), None);
        assert_eq!(decode(u64::MAX, 4), None);
    }

    #[test]
    fn halves_merge_and_extract() {
        let v = merge(0, Half::Low, 0x1234_5678);
        let v = merge(v, Half::High, 0x9);
        assert_eq!(v, 0x9_1234_5678);
        assert_eq!(extract(v, Half::High), 9);
        assert_eq!(merge(v, Half::Both, 7), 7);
    }
}
