//! Loads a Linux kernel for the PVH boot protocol: the vmlinux ELF (with its
//! XEN_ELFNOTE_PHYS32_ENTRY note) at its physical load address, the initramfs at the top of
//! RAM, the command line, and the `hvm_start_info` with the memory map and module list.
//!
//! linux-loader does the ELF parsing and writes the start info; this module decides the
//! layout and checks that everything fits.

use std::fs::File;
use std::path::Path;

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{load_cmdline, Cmdline, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::x86_64::layout::{
    CMDLINE_MAX, CMDLINE_START, HIMEM_START, MPTABLE_START, PVH_MEMMAP, PVH_MODLIST, PVH_START_INFO,
};
use crate::arch::x86_64::regs;
use crate::error::VmError;
use crate::vstate::vcpu::BootState;

/// "xEn3" with the 0x80 bit: the magic the PVH entry code checks in the start info.
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
/// Start info version 1 carries the memory map.
const START_INFO_VERSION: u32 = 1;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const PAGE_SIZE: u64 = 4096;
/// "HdrS" at offset 0x202: the file is a bzImage, not the ELF this loader wants.
const BZIMAGE_MAGIC_OFFSET: usize = 0x202;

/// The memory map the guest sees for `mem_size` bytes of RAM at 0: low RAM up to the MP
/// table, the MP table, legacy hole and ACPI tables reserved, then RAM from 1 MiB on.
pub fn memory_map(mem_size: u64) -> Vec<hvm_memmap_table_entry> {
    let entry = |addr: u64, end: u64, type_: u32| hvm_memmap_table_entry {
        addr,
        size: end - addr,
        type_,
        reserved: 0,
    };
    vec![
        entry(0, MPTABLE_START, E820_RAM),
        entry(MPTABLE_START, HIMEM_START, E820_RESERVED),
        entry(HIMEM_START, mem_size, E820_RAM),
    ]
}

fn image_error(what: &'static str, path: &Path, detail: impl ToString) -> VmError {
    VmError::BootImage {
        what,
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// Explains why a kernel file is not a PVH ELF, when it is a bzImage.
fn not_elf_hint(path: &Path) -> String {
    let mut header = [0u8; BZIMAGE_MAGIC_OFFSET + 4];
    let is_bzimage = File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
        .is_ok()
        && &header[BZIMAGE_MAGIC_OFFSET..] == b"HdrS";
    if is_bzimage {
        "this is a bzImage; pass the vmlinux ELF inside it (the decompressed payload)".into()
    } else {
        "not an ELF kernel image".into()
    }
}

/// Loads the vmlinux at `path`; returns the PVH entry point and the end of the kernel.
fn load_kernel(mem: &GuestMemoryMmap, path: &Path, mem_size: u64) -> Result<(u64, u64), VmError> {
    let mut file = File::open(path).map_err(|e| image_error("kernel", path, e))?;
    let loaded =
        Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))).map_err(|e| match e {
            linux_loader::loader::Error::Elf(
                linux_loader::loader::elf::Error::InvalidElfMagicNumber,
            ) => image_error("kernel", path, not_elf_hint(path)),
            other => image_error(
                "kernel",
                path,
                format!("{other} (guest RAM {mem_size:#x} bytes)"),
            ),
        })?;
    if loaded.kernel_end > mem_size {
        return Err(image_error(
            "kernel",
            path,
            format!(
                "it ends at {:#x}, past guest RAM of {mem_size:#x} bytes",
                loaded.kernel_end
            ),
        ));
    }
    match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(entry) => Ok((entry.0, loaded.kernel_end)),
        other => Err(image_error(
            "kernel",
            path,
            format!("no usable PVH entry note ({other}); the kernel needs CONFIG_PVH=y"),
        )),
    }
}

/// Loads the initramfs at the highest page-aligned address that fits; returns (addr, size).
fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
    mem_size: u64,
) -> Result<(u64, u64), VmError> {
    let mut file = File::open(path).map_err(|e| image_error("initrd", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| image_error("initrd", path, e))?
        .len();
    let addr = mem_size.saturating_sub(size) & !(PAGE_SIZE - 1);
    let lowest = kernel_end.next_multiple_of(PAGE_SIZE);
    if size == 0 || addr < lowest {
        return Err(image_error(
            "initrd",
            path,
            format!(
                "{size} bytes do not fit between the kernel end {lowest:#x} and the end of \
                 guest RAM {mem_size:#x}"
            ),
        ));
    }
    let len = usize::try_from(size).map_err(|e| image_error("initrd", path, e))?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, len)
        .map_err(|e| image_error("initrd", path, e))?;
    Ok((addr, size))
}

fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str) -> Result<(), VmError> {
    let bad = |detail: String| VmError::Config(format!("kernel cmdline {cmdline:?}: {detail}"));
    let parsed = Cmdline::try_from(cmdline, CMDLINE_MAX).map_err(|e| bad(e.to_string()))?;
    load_cmdline(mem, GuestAddress(CMDLINE_START), &parsed).map_err(|e| bad(e.to_string()))
}

/// Puts kernel, initramfs, command line, start info (pointing at the ACPI tables at
/// `rsdp_addr`) and boot GDT in `mem`; returns the state the boot vCPU starts in.
pub fn load(
    mem: &GuestMemoryMmap,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
    mem_size: u64,
    rsdp_addr: u64,
) -> Result<BootState, VmError> {
    let (entry, kernel_end) = load_kernel(mem, kernel, mem_size)?;
    write_cmdline(mem, cmdline)?;

    let memmap = memory_map(mem_size);
    let mut start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: START_INFO_VERSION,
        cmdline_paddr: CMDLINE_START,
        memmap_paddr: PVH_MEMMAP,
        memmap_entries: memmap.len() as u32,
        rsdp_paddr: rsdp_addr,
        ..Default::default()
    };
    let module = match initrd {
        Some(path) => {
            let (paddr, size) = load_initrd(mem, path, kernel_end, mem_size)?;
            start_info.nr_modules = 1;
            start_info.modlist_paddr = PVH_MODLIST;
            Some(hvm_modlist_entry {
                paddr,
                size,
                ..Default::default()
            })
        }
        None => None,
    };
    let mut params = BootParams::new(&start_info, GuestAddress(PVH_START_INFO));
    params.set_sections(&memmap, GuestAddress(PVH_MEMMAP));
    if let Some(module) = module {
        params.set_modules(&[module], GuestAddress(PVH_MODLIST));
    }
    PvhBootConfigurator::write_bootparams(&params, mem)
        .map_err(|e| VmError::GuestMemory(format!("PVH start info: {e}")))?;
    regs::write_protected_mode_tables(mem)?;
    Ok(BootState::Pvh {
        entry,
        start_info: PVH_START_INFO,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_map_leaves_the_legacy_hole_and_reserves_the_mp_table() {
        let map = memory_map(256 << 20);
        assert_eq!(map.len(), 3);
        assert_eq!(
            (map[0].addr, map[0].size, map[0].type_),
            (0, 0x9fc00, E820_RAM)
        );
        assert_eq!(map[1].type_, E820_RESERVED);
        assert_eq!(map[1].addr + map[1].size, HIMEM_START);
        assert_eq!(map[2].addr, HIMEM_START);
        assert_eq!(map[2].addr + map[2].size, 256 << 20);
    }

    fn scratch(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("runvm-linux-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write scratch file");
        path
    }

    #[test]
    fn a_bzimage_is_refused_with_a_hint() {
        let mut fake = vec![0u8; 0x400];
        fake[BZIMAGE_MAGIC_OFFSET..BZIMAGE_MAGIC_OFFSET + 4].copy_from_slice(b"HdrS");
        let path = scratch("bzimage", &fake);
        let mem = crate::vstate::memory::create_guest_memory(4 << 20).expect("memory");
        let err = load_kernel(&mem, &path, 4 << 20).expect_err("not an ELF");
        let _ = std::fs::remove_file(&path);
        assert!(err.to_string().contains("bzImage"), "{err}");
    }

    #[test]
    fn an_initrd_lands_page_aligned_at_the_top_and_too_big_ones_are_refused() {
        let mem = crate::vstate::memory::create_guest_memory(4 << 20).expect("memory");
        let path = scratch("initrd", &[0x5a; 5000]);
        let (addr, size) = load_initrd(&mem, &path, 2 << 20, 4 << 20).expect("fits");
        assert_eq!(size, 5000);
        assert_eq!(addr % PAGE_SIZE, 0);
        assert!(addr + size <= 4 << 20);
        let byte: u8 = mem.read_obj(GuestAddress(addr + 4999)).expect("read back");
        assert_eq!(byte, 0x5a);
        let refused = load_initrd(&mem, &path, (4 << 20) - 4096, 4 << 20);
        let _ = std::fs::remove_file(&path);
        assert!(refused.is_err());
    }

    #[test]
    fn cmdline_is_written_nul_terminated() {
        let mem = crate::vstate::memory::create_guest_memory(1 << 20).expect("memory");
        write_cmdline(&mem, "console=ttyS0 reboot=k").expect("fits");
        let mut buf = [0u8; 23];
        mem.read_slice(&mut buf, GuestAddress(CMDLINE_START))
            .expect("read");
        assert_eq!(&buf, b"console=ttyS0 reboot=k\0");
    }
}
