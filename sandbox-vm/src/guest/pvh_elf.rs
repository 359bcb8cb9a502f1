//! Wraps guest code in the smallest ELF a PVH loader accepts: one PT_LOAD segment at
//! [`LOAD_ADDR`] and a PT_NOTE with the Xen `XEN_ELFNOTE_PHYS32_ENTRY` note pointing at it.
//! Tests use it to drive the Linux boot path (start info, ACPI, MSRs) with a stand-in kernel
//! that runs a few instructions, fine even on a KVM that emulates them.
//!
//! Hand-written: a few dozen bytes of ELF64 headers (System V gABI, "ELF Header" and
//! "Program Header"); no crate writes ELF files this small without a linker.

/// Where the code is loaded and entered (1 MiB, where high memory starts).
pub const LOAD_ADDR: u64 = 0x10_0000;

const EHDR_LEN: u16 = 64;
const PHDR_LEN: u16 = 56;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_R_X: u32 = 0x5;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 0x3e;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

fn program_header(kind: u32, flags: u32, offset: u64, addr: u64, len: u64, align: u64) -> Vec<u8> {
    let mut ph = Vec::with_capacity(usize::from(PHDR_LEN));
    ph.extend_from_slice(&kind.to_le_bytes());
    ph.extend_from_slice(&flags.to_le_bytes());
    for field in [offset, addr, addr, len, len, align] {
        // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
        ph.extend_from_slice(&field.to_le_bytes());
    }
    ph
}

/// An ELF64 executable whose PVH entry is the start of `code`.
pub fn kernel(code: &[u8]) -> Vec<u8> {
    let headers = u64::from(EHDR_LEN + 2 * PHDR_LEN);
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // n_namesz: "Xen\0"
    note.extend_from_slice(&4u32.to_le_bytes()); // n_descsz: a 32-bit address
    note.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&(LOAD_ADDR as u32).to_le_bytes());
    let note_offset = headers;
    let code_offset = note_offset + note.len() as u64;

    let mut elf = Vec::new();
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // 64-bit, LE, v1, SysV
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&ET_EXEC.to_le_bytes());
    elf.extend_from_slice(&EM_X86_64.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // e_entry
    elf.extend_from_slice(&u64::from(EHDR_LEN).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [EHDR_LEN, PHDR_LEN, 2, 0, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&half.to_le_bytes());
    }
    let code_len = code.len() as u64;
    elf.extend(program_header(
        PT_LOAD,
        PF_R_X,
        code_offset,
        LOAD_ADDR,
        code_len,
        0x1000,
    ));
    elf.extend(program_header(
        PT_NOTE,
        0x4,
        note_offset,
        0,
        note.len() as u64,
        4,
    ));
    elf.extend_from_slice(&note);
    elf.extend_from_slice(code);
    elf
}

#[cfg(test)]
mod tests {
    use super::*;
    use linux_loader::loader::elf::{Elf, PvhBootCapability};
    use linux_loader::loader::KernelLoader;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn linux_loader_finds_the_pvh_entry_and_loads_the_code() {
        let code = [0x90, 0x90, 0xf4];
        let image = kernel(&code);
        let mem = crate::vstate::memory::create_guest_memory(2 << 20).expect("memory");
        let loaded = Elf::load(
            &mem,
            None,
            &mut std::io::Cursor::new(image),
            Some(GuestAddress(LOAD_ADDR)),
        )
        .expect("the loader accepts it");
        assert_eq!(
            loaded.pvh_boot_cap,
            PvhBootCapability::PvhEntryPresent(GuestAddress(LOAD_ADDR))
        );
        assert_eq!(loaded.kernel_end, LOAD_ADDR + 3);
        let mut back = [0u8; 3];
        mem.read_slice(&mut back, GuestAddress(LOAD_ADDR))
            .expect("read");
        assert_eq!(back, code);
    }
}
