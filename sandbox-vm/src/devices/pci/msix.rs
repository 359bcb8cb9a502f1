//! MSI-X (PCI Local Bus spec 3.0, 6.8.2): the capability, the vector table and the pending bit
//! array a device exposes in one of its BARs, and the delivery of its vectors through KVM.
//!
//! [`MsixTable`] is the guest-visible state and decides what each guest write means
//! ([`MsixEffect`]s); [`MsixVectors`] carries the effects out (KVM routes, irqfd writes) and is
//! what a device's interrupt handle signals, from any thread.

use std::sync::{Arc, Mutex, PoisonError};

use vmm_sys_util::eventfd::EventFd;

use crate::error::VmError;
use crate::vstate::irq::{GsiRouter, MsiMessage};

/// The MSI-X capability id.
pub const MSIX_CAPABILITY_ID: u8 = 0x11;
/// Bytes of one table entry: address low, address high, data, vector control.
pub const MSIX_ENTRY_SIZE: u64 = 16;
/// Message control bits the guest writes.
pub const MSIX_ENABLE: u16 = 1 << 15;
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// The most vectors one function may have.
pub const MSIX_MAX_VECTORS: u16 = 2048;
const VECTOR_MASKED: u32 = 1;

/// The capability body (after id and next pointer) for `vectors` entries with the table at
/// `table_offset` and the PBA at `pba_offset` of BAR `bar`, and its write mask.
pub fn capability(vectors: u16, bar: u8, table_offset: u32, pba_offset: u32) -> (Vec<u8>, Vec<u8>) {
    let mut body = Vec::with_capacity(10);
    body.extend_from_slice(&(vectors.saturating_sub(1) & 0x7ff).to_le_bytes());
    body.extend_from_slice(&(table_offset | u32::from(bar & 7)).to_le_bytes());
    body.extend_from_slice(&(pba_offset | u32::from(bar & 7)).to_le_bytes());
    let mask = (MSIX_ENABLE | MSIX_FUNCTION_MASK).to_le_bytes().to_vec();
    (body, mask)
}

/// Bytes the PBA takes for `vectors` entries (whole qwords).
pub fn pba_size(vectors: u16) -> u64 {
    u64::from(vectors).div_ceil(64) * 8
}

/// What the outside world must do after a change to the MSI-X state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsixEffect {
    /// Vector `vector` now sends `message` (its route must follow).
    Route { vector: u16, message: MsiMessage },
    /// Send vector `vector` now (it was pending and just became deliverable).
    Deliver(u16),
}

/// What happened to a signalled vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signalled {
    /// The message goes out now.
    Delivered,
    /// The vector or the function is masked: its pending bit is set.
    Pending,
    /// MSI-X is off (or the vector does not exist): nothing was sent.
    Disabled,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    address_lo: u32,
    address_hi: u32,
    data: u32,
    control: u32,
}

impl Default for Entry {
    fn default() -> Self {
        // Every vector starts masked (spec: after reset).
        Entry {
            address_lo: 0,
            address_hi: 0,
            data: 0,
            control: VECTOR_MASKED,
        }
    }
}

impl Entry {
    fn masked(&self) -> bool {
        self.control & VECTOR_MASKED != 0
    }

    fn message(&self) -> MsiMessage {
        MsiMessage {
            address: u64::from(self.address_hi) << 32 | u64::from(self.address_lo),
            data: self.data,
        }
    }
}

/// The guest-visible MSI-X state of one function.
#[derive(Debug, Clone)]
pub struct MsixTable {
    entries: Vec<Entry>,
    pending: Vec<bool>,
    enabled: bool,
    function_masked: bool,
}

impl MsixTable {
    /// A table of `vectors` entries (clamped to 1..=2048), all masked, MSI-X off.
    pub fn new(vectors: u16) -> Self {
        let n = usize::from(vectors.clamp(1, MSIX_MAX_VECTORS));
        MsixTable {
            entries: vec![Entry::default(); n],
            pending: vec![false; n],
            enabled: false,
            function_masked: false,
        }
    }

    pub fn len(&self) -> u16 {
        self.entries.len() as u16
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn is_pending(&self, vector: u16) -> bool {
        self.pending
            .get(usize::from(vector))
            .copied()
            .unwrap_or(false)
    }

    fn deliverable(&self, vector: usize) -> bool {
        self.enabled && !self.function_masked && !self.entries[vector].masked()
    }

    /// The guest read `data.len()` bytes at `offset` of the table. Only aligned dword and
    /// qword reads are answered; the rest reads all ones.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let mut out = [0u8; 8];
        let len = data.len();
        if !matches!(len, 4 | 8) || !offset.is_multiple_of(len as u64) {
            return;
        }
        for (i, chunk) in out[..len].chunks_mut(4).enumerate() {
            match self.table_dword(offset + 4 * i as u64) {
                Some(word) => chunk.copy_from_slice(&word.to_le_bytes()),
                None => return,
            }
        }
        data.copy_from_slice(&out[..len]);
    }

    fn table_dword(&self, offset: u64) -> Option<u32> {
        let entry = self
            .entries
            .get(usize::try_from(offset / MSIX_ENTRY_SIZE).ok()?)?;
        Some(match offset % MSIX_ENTRY_SIZE {
            0 => entry.address_lo,
            4 => entry.address_hi,
            8 => entry.data,
            _ => entry.control,
        })
    }

    /// The guest wrote the table. Only aligned dword and qword writes count.
    pub fn write_table(&mut self, offset: u64, data: &[u8]) -> Vec<MsixEffect> {
        let mut effects = Vec::new();
        let len = data.len();
        if !matches!(len, 4 | 8) || !offset.is_multiple_of(len as u64) {
            return effects;
        }
        for (i, chunk) in data.chunks(4).enumerate() {
            let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            self.write_table_dword(offset + 4 * i as u64, word, &mut effects);
        }
        effects
    }

    fn write_table_dword(&mut self, offset: u64, word: u32, effects: &mut Vec<MsixEffect>) {
        let Some(index) = usize::try_from(offset / MSIX_ENTRY_SIZE)
            .ok()
            .filter(|i| *i < self.entries.len())
        else {
            return;
        };
        let entry = &mut self.entries[index];
        let was_masked = entry.masked();
        let before = entry.message();
        match offset % MSIX_ENTRY_SIZE {
            0 => entry.address_lo = word,
            4 => entry.address_hi = word,
            8 => entry.data = word,
            // Only the mask bit is defined; the rest is reserved (reads 0).
            _ => entry.control = word & VECTOR_MASKED,
        }
        let entry = self.entries[index];
        let vector = index as u16;
        // Routes follow unmasked entries only: drivers rewrite masked entries a field at a
        // time, and a half-written message must never be installed.
        if !entry.masked() && (was_masked || entry.message() != before) {
            effects.push(MsixEffect::Route {
                vector,
                message: entry.message(),
            });
        }
        if was_masked && !entry.masked() {
            self.deliver_if_pending(index, effects);
        }
    }

    fn deliver_if_pending(&mut self, index: usize, effects: &mut Vec<MsixEffect>) {
        if self.pending[index] && self.deliverable(index) {
            self.pending[index] = false;
            effects.push(MsixEffect::Deliver(index as u16));
        }
    }

    /// The guest read the pending bit array (aligned dwords or qwords; the rest is all ones).
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        let len = data.len();
        if !matches!(len, 4 | 8) || !offset.is_multiple_of(len as u64) {
            data.fill(0xff);
            return;
        }
        for (i, byte) in data.iter_mut().enumerate() {
            let first = (offset as usize).saturating_add(i).saturating_mul(8);
            *byte = (0..8).fold(0u8, |acc, bit| {
                acc | (u8::from(self.is_pending_index(first.saturating_add(bit))) << bit)
            });
        }
    }

    fn is_pending_index(&self, index: usize) -> bool {
        self.pending.get(index).copied().unwrap_or(false)
    }

    /// The guest wrote the message control word of the capability.
    pub fn set_control(&mut self, control: u16) -> Vec<MsixEffect> {
        self.enabled = control & MSIX_ENABLE != 0;
        self.function_masked = control & MSIX_FUNCTION_MASK != 0;
        let mut effects = Vec::new();
        for index in 0..self.entries.len() {
            self.deliver_if_pending(index, &mut effects);
        }
        effects
    }

    /// The device signals `vector`.
    pub fn signal(&mut self, vector: u16) -> Signalled {
        let index = usize::from(vector);
        if !self.enabled || index >= self.entries.len() {
            return Signalled::Disabled;
        }
        if self.deliverable(index) {
            Signalled::Delivered
        } else {
            self.pending[index] = true;
            Signalled::Pending
        }
    }
}

/// A function's MSI-X state wired to KVM: vector n is an irqfd on GSI `first_gsi + n`.
/// Without an in-kernel irqchip there is no router and messages go nowhere.
pub struct MsixVectors {
    table: Mutex<MsixTable>,
    router: Option<Arc<GsiRouter>>,
    gsis: Vec<(u32, EventFd)>,
}

impl std::fmt::Debug for MsixVectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsixVectors")
            .field("vectors", &self.len())
            .field("routed", &self.router.is_some())
            .finish()
    }
}

impl MsixVectors {
    /// `vectors` vectors, each with its own GSI and irqfd when `router` is given.
    pub fn new(vectors: u16, router: Option<Arc<GsiRouter>>) -> Result<Self, VmError> {
        let table = MsixTable::new(vectors);
        let mut gsis = Vec::new();
        if let Some(router) = &router {
            let first = router.allocate(u32::from(table.len()))?;
            for gsi in first..first + u32::from(table.len()) {
                gsis.push((gsi, router.irqfd(gsi)?));
            }
        }
        Ok(MsixVectors {
            table: Mutex::new(table),
            router,
            gsis,
        })
    }

    pub fn len(&self) -> u16 {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn enabled(&self) -> bool {
        self.lock().enabled()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MsixTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        self.lock().read_table(offset, data);
    }

    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        self.lock().read_pba(offset, data);
    }

    /// Applies a guest write to the table. Routing failures are returned for the caller to
    /// flag; the write itself always lands.
    pub fn write_table(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        let effects = self.lock().write_table(offset, data);
        self.apply(&effects)
    }

    pub fn set_control(&self, control: u16) -> Result<(), String> {
        let effects = self.lock().set_control(control);
        self.apply(&effects)
    }

    /// Signals `vector` (from any thread).
    pub fn signal(&self, vector: u16) -> Result<Signalled, std::io::Error> {
        let outcome = self.lock().signal(vector);
        if outcome == Signalled::Delivered {
            self.fire(vector)?;
        }
        Ok(outcome)
    }

    fn fire(&self, vector: u16) -> Result<(), std::io::Error> {
        match self.gsis.get(usize::from(vector)) {
            Some((_, fd)) => fd.write(1),
            None => Ok(()),
        }
    }

    fn apply(&self, effects: &[MsixEffect]) -> Result<(), String> {
        let mut first_error = None;
        for effect in effects {
            let result = match *effect {
                MsixEffect::Route { vector, message } => {
                    match (&self.router, self.gsis.get(usize::from(vector))) {
                        (Some(router), Some((gsi, _))) => router.set_msi(*gsi, Some(message)),
                        _ => Ok(()),
                    }
                }
                MsixEffect::Deliver(vector) => self
                    .fire(vector)
                    .map_err(|e| format!("MSI-X vector {vector}: {e}")),
            };
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(table: &mut MsixTable, offset: u64, word: u32) -> Vec<MsixEffect> {
        table.write_table(offset, &word.to_le_bytes())
    }

    fn read(table: &MsixTable, offset: u64) -> u32 {
        let mut word = [0u8; 4];
        table.read_table(offset, &mut word);
        u32::from_le_bytes(word)
    }

    #[test]
    fn the_capability_encodes_size_bir_and_offsets() {
        let (body, mask) = capability(3, 0, 0x4000, 0x5000);
        assert_eq!(body, [2, 0, 0x00, 0x40, 0, 0, 0x00, 0x50, 0, 0]);
        assert_eq!(mask, [0, 0xc0]);
        assert_eq!(pba_size(3), 8);
        assert_eq!(pba_size(65), 16);
    }

    #[test]
    fn entries_start_masked_and_route_once_unmasked() {
        let mut table = MsixTable::new(2);
        assert_eq!(read(&table, 12), 1, "masked after reset");
        assert!(write(&mut table, 16, 0xfee0_0000).is_empty());
        assert!(write(&mut table, 20, 0).is_empty());
        assert!(
            write(&mut table, 24, 0x41).is_empty(),
            "masked: no route yet"
        );
        let message = MsiMessage {
            address: 0xfee0_0000,
            data: 0x41,
        };
        assert_eq!(
            write(&mut table, 28, 0),
            vec![MsixEffect::Route { vector: 1, message }]
        );
        assert_eq!(read(&table, 16), 0xfee0_0000);
        assert_eq!(read(&table, 24), 0x41);
        // Rewriting the same value changes nothing; a new data value reroutes.
        assert!(write(&mut table, 24, 0x41).is_empty());
        assert_eq!(write(&mut table, 24, 0x42).len(), 1);
        // Reserved control bits read back as 0.
        write(&mut table, 28, 0xffff_fffe);
        assert_eq!(read(&table, 28), 0);
    }

    #[test]
    fn masked_signals_pend_and_fire_on_unmask() {
        let mut table = MsixTable::new(1);
        assert_eq!(table.signal(0), Signalled::Disabled, "MSI-X off");
        assert!(table
            .set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK)
            .is_empty());
        assert_eq!(table.signal(0), Signalled::Pending);
        let mut pba = [0u8; 8];
        table.read_pba(0, &mut pba);
        assert_eq!(pba[0], 1);
        // Function unmasked, vector still masked: stays pending.
        assert!(table.set_control(MSIX_ENABLE).is_empty());
        assert!(table.is_pending(0));
        let effects = write(&mut table, 12, 0);
        assert_eq!(effects.last(), Some(&MsixEffect::Deliver(0)));
        assert!(!table.is_pending(0));
        assert_eq!(table.signal(0), Signalled::Delivered);
        assert_eq!(table.signal(7), Signalled::Disabled, "no such vector");
    }

    #[test]
    fn bad_widths_offsets_and_indexes_are_ignored() {
        let mut table = MsixTable::new(2);
        assert!(table.write_table(0, &[1, 2]).is_empty());
        assert!(table.write_table(2, &[0; 4]).is_empty());
        assert!(table.write_table(4, &[0; 8]).is_empty(), "unaligned qword");
        assert!(write(&mut table, 32, 0).is_empty(), "past the last entry");
        assert!(write(&mut table, u64::MAX - 3, 0).is_empty());
        assert_eq!(read(&table, 12), 1);
        let mut odd = [0u8; 2];
        table.read_table(0, &mut odd);
        assert_eq!(odd, [0xff; 2]);
        assert_eq!(read(&table, 32), u32::MAX);
        let mut pba = [0u8; 3];
        table.read_pba(0, &mut pba);
        assert_eq!(pba, [0xff; 3]);
        let mut far = [0u8; 8];
        table.read_pba(u64::MAX - 7, &mut far);
        assert_eq!(far, [0; 8]);
        // A qword write sets address low and high at once.
        table.write_table(0, &0x1_fee0_0000u64.to_le_bytes());
        assert_eq!((read(&table, 0), read(&table, 4)), (0xfee0_0000, 1));
        assert_eq!(MsixTable::new(0).len(), 1);
        assert_eq!(MsixTable::new(u16::MAX).len(), MSIX_MAX_VECTORS);
    }

    #[test]
    fn vectors_without_a_router_signal_without_panicking() {
        let vectors = MsixVectors::new(2, None).expect("no KVM needed");
        assert_eq!(vectors.signal(0).expect("signal"), Signalled::Disabled);
        vectors.set_control(MSIX_ENABLE).expect("control");
        vectors
            .write_table(12, &0u32.to_le_bytes())
            .expect("unmask");
        assert_eq!(vectors.signal(0).expect("signal"), Signalled::Delivered);
        assert_eq!(vectors.signal(1).expect("signal"), Signalled::Pending);
    }
}
