//! Guest RAM: one anonymous mapping from guest physical address 0, registered with KVM.

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::x86_64::layout::{MAX_GUEST_MEMORY, MIN_GUEST_MEMORY};
use crate::error::VmError;

const PAGE_SIZE: usize = 4096;

/// Allocates `size` bytes of guest RAM at guest physical 0 (pages are touched lazily).
pub fn create_guest_memory(size: usize) -> Result<GuestMemoryMmap, VmError> {
    if !(MIN_GUEST_MEMORY..=MAX_GUEST_MEMORY).contains(&size) || size & (PAGE_SIZE - 1) != 0 {
        return Err(VmError::Config(format!(
            "mem_size {size:#x}: must be a multiple of 4 KiB between {MIN_GUEST_MEMORY:#x} \
             and {MAX_GUEST_MEMORY:#x}"
        )));
    }
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)])
        .map_err(|e| VmError::GuestMemory(format!("cannot map {size:#x} bytes: {e}")))
}

/// Registers every region of `mem` as a KVM memory slot.
///
/// The caller must keep `mem` alive for as long as `vm` can run vCPUs.
pub fn register_with_kvm(vm: &kvm_ioctls::VmFd, mem: &GuestMemoryMmap) -> Result<(), VmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(|e| VmError::GuestMemory(format!("host address of slot {slot}: {e}")))?;
        let slot = u32::try_from(slot)
            .map_err(|_| VmError::GuestMemory(format!("too many memory slots ({slot})")))?;
        let region_desc = kvm_bindings::kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mapping of exactly `memory_size` bytes owned by `mem`,
        // and the monitor drops the VM fd (and joins all vCPUs) before it drops `mem`.
        unsafe { vm.set_user_memory_region(region_desc) }
            .map_err(VmError::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

/// Bytes of guest RAM the host really backs right now (pages touched by guest or monitor).
pub fn resident_bytes(mem: &GuestMemoryMmap) -> u64 {
    let mut resident = 0u64;
    for region in mem.iter() {
        let Ok(host) = mem.get_host_address(region.start_addr()) else {
            continue;
        };
        let Ok(len) = usize::try_from(region.len()) else {
            continue;
        };
        let mut pages = vec![0u8; len.div_ceil(PAGE_SIZE)];
        // SAFETY: `host..host+len` is one page-aligned mapping owned by `mem`, and `pages`
        // has one byte per page as mincore(2) requires.
        let rc = unsafe { libc::mincore(host.cast(), len, pages.as_mut_ptr()) };
        if rc == 0 {
            resident += pages.iter().filter(|p| **p & 1 == 1).count() as u64 * PAGE_SIZE as u64;
        }
    }
    resident
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn sizes_outside_the_layout_are_refused() {
        assert!(create_guest_memory(4096).is_err());
        assert!(create_guest_memory(MIN_GUEST_MEMORY + 1).is_err());
        assert!(create_guest_memory(MAX_GUEST_MEMORY + PAGE_SIZE).is_err());
    }

    #[test]
    fn resident_bytes_grow_with_touched_pages() {
        let mem = create_guest_memory(4 << 20).expect("4 MiB");
        let before = resident_bytes(&mem);
        for page in 0..16u64 {
            mem.write_obj(1u8, GuestAddress(page * 4096 + 0x10_0000))
                .expect("in range");
        }
        let after = resident_bytes(&mem);
        assert!(
            after >= before + 16 * 4096,
            "before {before}, after {after}"
        );
        assert!(after < 4 << 20, "untouched pages stay unbacked");
    }
}
