//! Global descriptor table entries and the matching KVM segment registers.
//!
//! Hand-written: no rust-vmm crate builds GDTs (Firecracker keeps this in its own arch code).
//! The encoding is the one in the Intel SDM vol. 3, 3.4.5 "Segment Descriptors".

use kvm_bindings::kvm_segment;

/// Selector indexes of the GDT the monitor installs.
pub const NULL_INDEX: usize = 0;
pub const CODE64_INDEX: usize = 1;
pub const DATA_INDEX: usize = 2;
pub const TSS_INDEX: usize = 3;

/// Access+flags for a 64-bit code segment: present, ring 0, code, exec/read, L=1, G=1.
const CODE64_FLAGS: u16 = 0xa09b;
/// 32-bit code segment: present, ring 0, code, exec/read, D=1, G=1 (the PVH entry).
const CODE32_FLAGS: u16 = 0xc09b;
/// Data segment: present, ring 0, data, read/write, D/B=1, G=1.
const DATA_FLAGS: u16 = 0xc093;
/// 64-bit TSS (busy): present, type 0xb.
const TSS_FLAGS: u16 = 0x808b;

/// Packs `flags` (access byte in bits 0..8, flags nibble in 12..16), `base` and `limit`
/// into one 8-byte descriptor.
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = u64::from(base);
    let limit = u64::from(limit);
    let flags = u64::from(flags);
    ((base & 0xff00_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
        | ((limit & 0x000f_0000) << 32)
        | ((flags & 0xf0ff) << 40)
}

/// The GDT for long mode: null, 64-bit code, data, TSS.
pub fn long_mode_gdt() -> [u64; 4] {
    [
        0,
        gdt_entry(CODE64_FLAGS, 0, 0xfffff),
        gdt_entry(DATA_FLAGS, 0, 0xfffff),
        gdt_entry(TSS_FLAGS, 0, 0xfffff),
    ]
}

/// The GDT for the 32-bit protected-mode PVH entry: null, 32-bit code, data, TSS (same
/// selectors as [`long_mode_gdt`]).
pub fn protected_mode_gdt() -> [u64; 4] {
    [
        0,
        gdt_entry(CODE32_FLAGS, 0, 0xfffff),
        gdt_entry(DATA_FLAGS, 0, 0xfffff),
        gdt_entry(TSS_FLAGS, 0, 0xfffff),
    ]
}

/// The KVM segment register that loading selector `index` of a GDT holding `entry` gives.
pub fn segment_from_entry(entry: u64, index: usize) -> kvm_segment {
    let field = |shift: u32, mask: u64| ((entry >> shift) & mask) as u8;
    let g = field(55, 1);
    let raw_limit = ((entry & 0x000f_0000_0000_0000) >> 32) | (entry & 0xffff);
    // With G=1 the limit counts 4 KiB pages; KVM wants the byte limit.
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    kvm_segment {
        base: ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: limit as u32,
        selector: (index * 8) as u16,
        type_: field(40, 0xf),
        present: field(47, 1),
        dpl: field(45, 0x3),
        db: field(54, 1),
        s: field(44, 1),
        l: field(53, 1),
        g,
        avl: field(52, 1),
        unusable: u8::from(field(47, 1) == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_segment_round_trips_through_the_descriptor() {
        let gdt = long_mode_gdt();
        let code = segment_from_entry(gdt[CODE64_INDEX], CODE64_INDEX);
        assert_eq!(code.selector, 0x08);
        assert_eq!(code.l, 1, "64-bit code segment needs L=1");
        assert_eq!(code.db, 0, "L=1 requires D=0");
        assert_eq!(code.type_, 0xb);
        assert_eq!((code.present, code.s, code.g), (1, 1, 1));
        assert_eq!(code.limit, 0xffff_ffff);
        assert_eq!(code.base, 0);
    }

    #[test]
    fn protected_mode_code_segment_is_32_bit_flat() {
        let gdt = protected_mode_gdt();
        let code = segment_from_entry(gdt[CODE64_INDEX], CODE64_INDEX);
        assert_eq!((code.l, code.db, code.type_), (0, 1, 0xb));
        assert_eq!((code.base, code.limit), (0, 0xffff_ffff));
    }

    #[test]
    fn data_and_tss_segments_have_their_types() {
        let gdt = long_mode_gdt();
        let data = segment_from_entry(gdt[DATA_INDEX], DATA_INDEX);
        assert_eq!(
            (data.selector, data.type_, data.db, data.l),
            (0x10, 3, 1, 0)
        );
        let tss = segment_from_entry(gdt[TSS_INDEX], TSS_INDEX);
        assert_eq!((tss.selector, tss.type_, tss.s), (0x18, 0xb, 0));
        assert_eq!(segment_from_entry(0, NULL_INDEX).unusable, 1);
    }

    #[test]
    fn base_and_limit_are_split_across_the_descriptor() {
        let entry = gdt_entry(0x4093, 0x1234_5678, 0xa_bcde);
        let seg = segment_from_entry(entry, 2);
        assert_eq!(seg.base, 0x1234_5678);
        assert_eq!(seg.limit, 0xa_bcde, "byte granular (G=0)");
    }
}
