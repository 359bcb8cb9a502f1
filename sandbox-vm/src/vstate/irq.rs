//! Interrupt routing for message-signalled interrupts: which GSI becomes which MSI message.
//!
//! KVM has one routing table per VM and KVM_SET_GSI_ROUTING replaces all of it, including the
//! default routes KVM made for the PIC and IO-APIC pins when the irqchip was created. So the
//! table the router sets always starts with those defaults (GSIs 0..24), then one MSI route per
//! GSI a device vector uses. Devices signal a vector by writing an eventfd registered as an
//! irqfd on its GSI; KVM delivers the message in the kernel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_MAX_IRQ_ROUTES,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

use crate::arch::x86_64::layout::MSI_GSI_START;
use crate::error::VmError;

/// IO-APIC pins of KVM's in-kernel IO-APIC; the PICs cover the first 16 of them.
const IOAPIC_PINS: u32 = 24;
const PIC_PINS: u32 = 16;

/// One MSI message: where the device writes, and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// KVM's default irqchip routes: GSI n goes to IO-APIC pin n, and for n < 16 also to pin
/// n % 8 of the master (n < 8) or slave PIC, exactly what KVM_CREATE_IRQCHIP sets up.
fn default_routes() -> Vec<kvm_irq_routing_entry> {
    let mut routes = Vec::new();
    for gsi in 0..IOAPIC_PINS {
        if gsi < PIC_PINS {
            let chip = if gsi < 8 {
                KVM_IRQCHIP_PIC_MASTER
            } else {
                KVM_IRQCHIP_PIC_SLAVE
            };
            routes.push(irqchip_route(gsi, chip, gsi % 8));
        }
        routes.push(irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi));
    }
    routes
}

fn irqchip_route(gsi: u32, irqchip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    entry.u.irqchip.irqchip = irqchip;
    entry.u.irqchip.pin = pin;
    entry
}

fn msi_route(gsi: u32, message: MsiMessage) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    entry.u.msi.address_lo = message.address as u32;
    entry.u.msi.address_hi = (message.address >> 32) as u32;
    entry.u.msi.data = message.data;
    entry
}

/// The whole table KVM gets: the defaults, then the MSI routes by GSI.
fn routing_table(msi: &BTreeMap<u32, MsiMessage>) -> Result<KvmIrqRouting, String> {
    let defaults = default_routes();
    let mut table = KvmIrqRouting::new(0).map_err(|e| format!("routing table: {e:?}"))?;
    let entries = defaults
        .into_iter()
        .chain(msi.iter().map(|(gsi, m)| msi_route(*gsi, *m)));
    for entry in entries {
        table
            .push(entry)
            .map_err(|e| format!("routing table entry for GSI {}: {e:?}", entry.gsi))?;
    }
    Ok(table)
}

struct RouterState {
    msi: BTreeMap<u32, MsiMessage>,
    next_gsi: u32,
}

/// Hands out GSIs for MSI vectors and keeps KVM's routing table in step with the messages
/// the guest programmed. Shared by every device's MSI-X state.
pub struct GsiRouter {
    vm: Arc<VmFd>,
    state: Mutex<RouterState>,
}

impl std::fmt::Debug for GsiRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GsiRouter").finish_non_exhaustive()
    }
}

impl GsiRouter {
    pub fn new(vm: Arc<VmFd>) -> Self {
        GsiRouter {
            vm,
            state: Mutex::new(RouterState {
                msi: BTreeMap::new(),
                next_gsi: MSI_GSI_START,
            }),
        }
    }

    /// Reserves `count` consecutive GSIs; returns the first.
    pub fn allocate(&self, count: u32) -> Result<u32, VmError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let first = state.next_gsi;
        match first.checked_add(count) {
            Some(end) if end as usize <= KVM_MAX_IRQ_ROUTES => {
                state.next_gsi = end;
                Ok(first)
            }
            _ => Err(VmError::Config(format!(
                "{count} more MSI vectors: past KVM's {KVM_MAX_IRQ_ROUTES} interrupt routes"
            ))),
        }
    }

    /// Makes an irqfd on `gsi` out of a new eventfd: writing it raises that GSI.
    pub fn irqfd(&self, gsi: u32) -> Result<EventFd, VmError> {
        let fd = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| VmError::Config(format!("MSI eventfd for GSI {gsi}: {e}")))?;
        self.vm
            .register_irqfd(&fd, gsi)
            .map_err(VmError::kvm("KVM_IRQFD (MSI)"))?;
        Ok(fd)
    }

    /// Routes `gsi` to `message`, or removes its route (`None`), and tells KVM.
    pub fn set_msi(&self, gsi: u32, message: Option<MsiMessage>) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = match message {
            Some(m) => state.msi.insert(gsi, m) != Some(m),
            None => state.msi.remove(&gsi).is_some(),
        };
        if !changed {
            return Ok(());
        }
        // Set while holding the lock, so two vCPUs cannot install their tables out of order.
        let table = routing_table(&state.msi)?;
        self.vm
            .set_gsi_routing(&table)
            .map_err(|e| format!("KVM_SET_GSI_ROUTING for GSI {gsi}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_keeps_kvms_default_irqchip_routes() {
        let table = routing_table(&BTreeMap::new()).expect("table");
        let entries = table.as_slice();
        // 16 PIC routes + 24 IO-APIC routes.
        assert_eq!(entries.len(), 40);
        let ioapic: Vec<(u32, u32)> = entries
            .iter()
            .filter(|e| {
                // SAFETY: every entry here is an irqchip route (type checked first).
                e.type_ == KVM_IRQ_ROUTING_IRQCHIP
                    && unsafe { e.u.irqchip.irqchip } == KVM_IRQCHIP_IOAPIC
            })
            // SAFETY: filtered to irqchip routes above.
            .map(|e| (e.gsi, unsafe { e.u.irqchip.pin }))
            .collect();
        assert_eq!(ioapic, (0..24).map(|n| (n, n)).collect::<Vec<_>>());
        let slave_pic: Vec<(u32, u32)> = entries
            .iter()
            // SAFETY: all default entries are irqchip routes.
            .filter(|e| unsafe { e.u.irqchip.irqchip } == KVM_IRQCHIP_PIC_SLAVE)
            // SAFETY: as above.
            .map(|e| (e.gsi, unsafe { e.u.irqchip.pin }))
            .collect();
        assert_eq!(slave_pic, (8..16).map(|n| (n, n - 8)).collect::<Vec<_>>());
    }

    #[test]
    fn msi_routes_follow_the_defaults_with_split_addresses() {
        let mut msi = BTreeMap::new();
        msi.insert(
            25,
            MsiMessage {
                address: 0x1_fee0_1000,
                data: 0x4041,
            },
        );
        let table = routing_table(&msi).expect("table");
        let last = table.as_slice().last().copied().expect("entries");
        assert_eq!((last.gsi, last.type_), (25, KVM_IRQ_ROUTING_MSI));
        // SAFETY: the entry is an MSI route (type checked above).
        let m = unsafe { last.u.msi };
        assert_eq!(
            (m.address_lo, m.address_hi, m.data),
            (0xfee0_1000, 1, 0x4041)
        );
    }
}
