//! The DMA access layer: the one way devices reach guest memory.
//!
//! Every device gets a [`DmaMemory`], never the raw [`GuestMemoryMmap`]. Today each device's
//! address space is the identity (bus address = guest physical address). The DMA confinement
//! work puts a virtual IOMMU here: it fills the device's [`DmaDomain`] with the mappings the
//! guest driver asked for and turns translation on, and every access outside them fails. The
//! devices do not change, because virtio-queue and vm-memory already address memory through
//! the IOVA-aware `GuestMemory` trait that `IommuMemory` implements.

use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use vm_memory::iommu::{Error as IommuError, IotlbIterator, IovaRange};
use vm_memory::{GuestAddress, GuestMemoryMmap, Iommu, IommuMemory, Iotlb, Permissions};

/// What a device sees as memory: guest RAM behind its (possibly disabled) translation.
pub type DmaMemory = IommuMemory<GuestMemoryMmap, DmaDomain>;

/// One device's I/O address space: the mappings its driver set up through a virtual IOMMU.
/// Cloning a [`DmaMemory`] shares the domain.
#[derive(Debug, Default)]
pub struct DmaDomain {
    mappings: RwLock<Iotlb>,
}

impl DmaDomain {
    /// Maps `len` bytes at bus address `iova` to guest physical `gpa` with `access`.
    pub fn map(
        &self,
        iova: GuestAddress,
        gpa: GuestAddress,
        len: usize,
        access: Permissions,
    ) -> Result<(), IommuError> {
        self.mappings
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .set_mapping(iova, gpa, len, access)
    }

    /// Removes any mapping in `iova..iova+len`.
    pub fn unmap(&self, iova: GuestAddress, len: usize) {
        self.mappings
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .invalidate_mapping(iova, len);
    }
}

impl Iommu for DmaDomain {
    type IotlbGuard<'a> = RwLockReadGuard<'a, Iotlb>;

    /// The domain holds every mapping the driver made, so a miss is final: the device touched
    /// memory it was not given.
    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<IotlbIterator<Self::IotlbGuard<'_>>, IommuError> {
        let guard = self.mappings.read().unwrap_or_else(PoisonError::into_inner);
        Iotlb::lookup(guard, iova, length, access).map_err(|fails| IommuError::CannotResolve {
            iova_range: IovaRange { base: iova, length },
            reason: format!(
                "not mapped for this device ({} unmapped, {} without {access:?} access)",
                fails.misses.len(),
                fails.access_fails.len()
            ),
        })
    }
}

/// A device address space that sees all of guest RAM at its guest physical addresses, as a
/// device without an IOMMU in front of it does.
pub fn identity(memory: &GuestMemoryMmap) -> DmaMemory {
    IommuMemory::new(memory.clone(), DmaDomain::default(), false, ())
}

/// A device address space confined to what is mapped in its own, initially empty, domain.
pub fn confined(memory: &GuestMemoryMmap) -> DmaMemory {
    IommuMemory::new(memory.clone(), DmaDomain::default(), true, ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    fn ram() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("1 MiB")
    }

    #[test]
    fn identity_space_reads_and_writes_guest_ram() {
        let memory = ram();
        let dma = identity(&memory);
        dma.write_obj(0xdead_beef_u32, GuestAddress(0x4000))
            .expect("in RAM");
        assert_eq!(
            memory
                .read_obj::<u32>(GuestAddress(0x4000))
                .expect("in RAM"),
            0xdead_beef
        );
        assert!(dma.read_obj::<u32>(GuestAddress(0x10_0000)).is_err());
    }

    #[test]
    fn confined_space_reaches_only_what_is_mapped_and_translates_it() {
        let memory = ram();
        memory
            .write_obj(0x1122_3344_u32, GuestAddress(0x8000))
            .expect("in RAM");
        let dma = confined(&memory);
        assert!(dma.read_obj::<u32>(GuestAddress(0x8000)).is_err());
        dma.iommu()
            .map(
                GuestAddress(0xf000_0000),
                GuestAddress(0x8000),
                0x1000,
                Permissions::Read,
            )
            .expect("map");
        assert_eq!(
            dma.read_obj::<u32>(GuestAddress(0xf000_0000))
                .expect("mapped"),
            0x1122_3344
        );
        // Read-only mapping: the device cannot write through it.
        assert!(dma.write_obj(0u32, GuestAddress(0xf000_0000)).is_err());
        dma.iommu().unmap(GuestAddress(0xf000_0000), 0x1000);
        assert!(dma.read_obj::<u32>(GuestAddress(0xf000_0000)).is_err());
    }
}
