//! A tiny x86 code emitter for the test guests, so runvm needs no external assembler.
//!
//! Hand-written: it only knows the dozen instructions the tiny guests use, each with its
//! encoding in the comment (Intel SDM vol. 2). 16-, 32- and 64-bit code differ only where an
//! operand-size prefix or a different opcode is needed.

/// The CPU mode the emitted code runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    Real16,
    /// 32-bit protected mode (the PVH entry of a Linux boot).
    Protected32,
    Long64,
}

/// Emits machine code for one straight-line tiny guest.
#[derive(Debug, Clone)]
pub struct Asm {
    bits: Bits,
    code: Vec<u8>,
}

impl Asm {
    pub fn new(bits: Bits) -> Self {
        Asm {
            bits,
            code: Vec::new(),
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> &mut Self {
        self.code.extend_from_slice(bytes);
        self
    }

    /// `mov dx, port` (BA iw; 66 BA iw in 32/64-bit mode where the default operand is 32-bit).
    pub fn mov_dx(&mut self, port: u16) -> &mut Self {
        if self.bits != Bits::Real16 {
            self.emit(&[0x66]);
        }
        let [lo, hi] = port.to_le_bytes();
        self.emit(&[0xba, lo, hi])
    }

    /// `mov al, value; out dx, al` (B0 ib; EE).
    pub fn out_dx_byte(&mut self, value: u8) -> &mut Self {
        self.emit(&[0xb0, value, 0xee])
    }

    /// `mov al, value; out port, al` (B0 ib; E6 ib) for ports below 0x100.
    pub fn out_imm_port(&mut self, port: u8, value: u8) -> &mut Self {
        self.emit(&[0xb0, value, 0xe6, port])
    }

    /// Sends `text` to the UART at `port`, one `out` per byte (the UART never makes the
    /// guest wait, so the tiny guests skip polling the line status).
    pub fn print(&mut self, port: u16, text: &[u8]) -> &mut Self {
        self.mov_dx(port);
        for byte in text {
            self.out_dx_byte(*byte);
        }
        self
    }

    /// `mov ecx, n; l: dec ecx; jnz l`: n iterations of a two-instruction loop
    /// (66 B9 id / B9 id; 66 49 / FF C9; 75 FC).
    pub fn count_down(&mut self, iterations: u32) -> &mut Self {
        let n = iterations.max(1).to_le_bytes();
        match self.bits {
            Bits::Real16 => self
                .emit(&[0x66, 0xb9])
                .emit(&n)
                .emit(&[0x66, 0x49, 0x75, 0xfc]),
            // In 32-bit mode `dec ecx` has the one-byte form 49, so the jump is one shorter.
            Bits::Protected32 => self.emit(&[0xb9]).emit(&n).emit(&[0x49, 0x75, 0xfd]),
            Bits::Long64 => self.emit(&[0xb9]).emit(&n).emit(&[0xff, 0xc9, 0x75, 0xfc]),
        }
    }

    /// Prints what a PVH entry finds, 32-bit only, with %ebx pointing at the hvm_start_info:
    /// '1'/'0' for its magic, '1'/'0' for "one module", CR0.PG ('0': paging off), the first
    /// byte of the module (initramfs), the first byte of the command line.
    pub fn print_pvh_start_info(&mut self, port: u16) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Protected32);
        let magic = 0x336e_c578u32.to_le_bytes();
        self.mov_dx(port)
            .emit(&[0x81, 0x3b]) // cmp dword [ebx], magic
            .emit(&magic)
            .emit(&[0x0f, 0x94, 0xc0, 0x04, b'0', 0xee]) // sete al; add al, '0'; out dx, al
            .emit(&[0x83, 0x7b, 0x0c, 0x01]) // cmp dword [ebx+12], 1 (nr_modules)
            .emit(&[0x0f, 0x94, 0xc0, 0x04, b'0', 0xee])
            .emit(&[0x0f, 0x20, 0xc0]) // mov eax, cr0
            .emit(&[0xc1, 0xe8, 0x1f, 0x04, b'0', 0xee]) // shr eax, 31; add al, '0'; out
            .emit(&[0x8b, 0x73, 0x10]) // mov esi, [ebx+16] (modlist_paddr)
            .emit(&[0x8b, 0x36]) // mov esi, [esi] (the module's paddr)
            .emit(&[0x8a, 0x06, 0xee]) // mov al, [esi]; out dx, al
            .emit(&[0x8b, 0x73, 0x18]) // mov esi, [ebx+24] (cmdline_paddr)
            .emit(&[0x8a, 0x06, 0xee]) // mov al, [esi]; out dx, al
    }

    /// Prints '1' or '0' to the UART at `port`: bit LMA of the EFER MSR, i.e. whether the
    /// CPU really is in long mode (64-bit only: B9 id; 0F 32; C1 E8 0A; 24 01; 04 30; EE).
    pub fn print_efer_lma(&mut self, port: u16) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0xb9, 0x80, 0x00, 0x00, 0xc0]) // mov ecx, 0xc0000080 (EFER)
            .emit(&[0x0f, 0x32]) // rdmsr (fills edx:eax, so dx is loaded after it)
            .emit(&[0xc1, 0xe8, 0x0a]) // shr eax, 10
            .emit(&[0x24, 0x01]) // and al, 1
            .emit(&[0x04, b'0']) // add al, '0'
            .mov_dx(port)
            .emit(&[0xee]) // out dx, al
    }

    /// Prints the byte 'L' through a 64-bit-only computation: `mov rax, 'L' << 32;
    /// shr rax, 32; out dx, al` (48 B8 iq; 48 C1 E8 20; EE). Any other mode decodes it
    /// differently and prints something else.
    pub fn print_via_64bit_register(&mut self, port: u16) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        let wide = (u64::from(b'L') << 32).to_le_bytes();
        self.mov_dx(port)
            .emit(&[0x48, 0xb8])
            .emit(&wide)
            .emit(&[0x48, 0xc1, 0xe8, 0x20, 0xee])
    }

    /// Prints what CPUID tells the guest about the hypervisor: '1'/'0' for CPUID.1:ECX[31],
    /// then the first byte of the leaf 0x40000000 signature ('K' for "KVMKVMKVM").
    /// 64-bit only: B8 id; 0F A2; C1 E9 1F; 88 C8; 04 30; EE and B8 id; 0F A2; 88 D8; EE.
    pub fn print_cpuid_hypervisor(&mut self, port: u16) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0xb8, 0x01, 0x00, 0x00, 0x00]) // mov eax, 1
            .emit(&[0x0f, 0xa2]) // cpuid (fills ebx, ecx, edx)
            .emit(&[0xc1, 0xe9, 0x1f]) // shr ecx, 31
            .emit(&[0x88, 0xc8]) // mov al, cl
            .emit(&[0x04, b'0']) // add al, '0'
            .mov_dx(port)
            .emit(&[0xee]) // out dx, al
            .emit(&[0xb8, 0x00, 0x00, 0x00, 0x40]) // mov eax, 0x40000000
            .emit(&[0x0f, 0xa2]) // cpuid
            .emit(&[0x88, 0xd8]) // mov al, bl
            .mov_dx(port)
            .emit(&[0xee]) // out dx, al
    }

    /// `mov eax, imm32` (B8 id; 66 B8 id in real mode).
    pub fn mov_eax(&mut self, value: u32) -> &mut Self {
        if self.bits == Bits::Real16 {
            self.emit(&[0x66]);
        }
        self.emit(&[0xb8]).emit(&value.to_le_bytes())
    }

    /// `out dx, eax` (EF; 66 EF in real mode).
    pub fn out_dx_eax(&mut self) -> &mut Self {
        if self.bits == Bits::Real16 {
            self.emit(&[0x66]);
        }
        self.emit(&[0xef])
    }

    /// `in eax, dx` (ED; 66 ED in real mode).
    pub fn in_eax_dx(&mut self) -> &mut Self {
        if self.bits == Bits::Real16 {
            self.emit(&[0x66]);
        }
        self.emit(&[0xed])
    }

    /// Sends the 4 bytes of eax, low byte first, to the port in dx: `out dx, al;
    /// shr eax, 8` four times (EE; C1 E8 08, with 66 before the shift in real mode).
    pub fn out_dx_eax_bytes(&mut self) -> &mut Self {
        for _ in 0..4 {
            self.emit(&[0xee]);
            if self.bits == Bits::Real16 {
                self.emit(&[0x66]);
            }
            self.emit(&[0xc1, 0xe8, 0x08]);
        }
        self
    }

    /// `mov ebx, eax` (89 C3; 66 89 C3 in real mode). In 64-bit mode this zero-extends.
    pub fn mov_ebx_eax(&mut self) -> &mut Self {
        if self.bits == Bits::Real16 {
            self.emit(&[0x66]);
        }
        self.emit(&[0x89, 0xc3])
    }

    /// 64-bit only: `mov rax, imm64; mov [abs32], rax` (48 B8 iq; 48 89 04 25 id).
    pub fn store_u64(&mut self, addr: u32, value: u64) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0x48, 0xb8])
            .emit(&value.to_le_bytes())
            .emit(&[0x48, 0x89, 0x04, 0x25])
            .emit(&addr.to_le_bytes())
    }

    /// 64-bit only: `mov byte/word/dword [rbx + disp32], imm` (C6 83 / 66 C7 83 / C7 83),
    /// for MMIO registers at an offset from a base held in rbx.
    pub fn store_rbx(&mut self, disp: u32, width: u8, value: u32) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        match width {
            1 => self
                .emit(&[0xc6, 0x83])
                .emit(&disp.to_le_bytes())
                .emit(&[value as u8]),
            2 => self
                .emit(&[0x66, 0xc7, 0x83])
                .emit(&disp.to_le_bytes())
                .emit(&(value as u16).to_le_bytes()),
            _ => self
                .emit(&[0xc7, 0x83])
                .emit(&disp.to_le_bytes())
                .emit(&value.to_le_bytes()),
        }
    }

    /// 64-bit only: `mov byte/word/dword [abs32], imm` (C6 04 25 / 66 C7 04 25 / C7 04 25,
    /// then disp32 and the immediate), for virtqueue fields in guest RAM.
    pub fn store_abs(&mut self, addr: u32, width: u8, value: u32) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        match width {
            1 => self
                .emit(&[0xc6, 0x04, 0x25])
                .emit(&addr.to_le_bytes())
                .emit(&[value as u8]),
            2 => self
                .emit(&[0x66, 0xc7, 0x04, 0x25])
                .emit(&addr.to_le_bytes())
                .emit(&(value as u16).to_le_bytes()),
            _ => self
                .emit(&[0xc7, 0x04, 0x25])
                .emit(&addr.to_le_bytes())
                .emit(&value.to_le_bytes()),
        }
    }

    /// 64-bit only: polls until the byte at `addr` equals `value`, at most `iterations`
    /// times; if it never does, writes `timeout_status` to `port` and halts. Each poll first
    /// reads `pace_port` (a harmless register, e.g. a UART status): that exit to the monitor
    /// makes a poll cost about the same on hardware and on an emulating KVM, so one bound
    /// suits both. A bounded wait for a device that works on another thread:
    /// `mov dx, pace; mov ecx, n; l: in al, dx; cmp byte [abs32], imm8; je done; dec ecx;
    /// jnz l; mov al, status; out port, al; hlt; done:`
    /// (66 BA iw; B9 id; EC; 80 3C 25 id ib; 74 09; FF C9; 75 F1; B0 ib; E6 ib; F4).
    pub fn wait_for_byte(
        &mut self,
        addr: u32,
        value: u8,
        iterations: u32,
        pace_port: u16,
        port: u8,
        timeout_status: u8,
    ) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        let n = iterations.max(1).to_le_bytes();
        self.mov_dx(pace_port)
            .emit(&[0xb9])
            .emit(&n)
            .emit(&[0xec, 0x80, 0x3c, 0x25])
            .emit(&addr.to_le_bytes())
            .emit(&[value])
            // je skips dec (2), jnz (2), mov al (2), out (2) and hlt (1).
            .emit(&[0x74, 0x09, 0xff, 0xc9])
            // jnz back over itself (2), dec (2), je (2), the 8-byte cmp and in (1): -15.
            .emit(&[0x75, 0xf1])
            .out_imm_port(port, timeout_status)
            .hlt()
    }

    /// 64-bit only: `mov al, [rbx + disp32]` (8A 83 id).
    pub fn load_al_rbx(&mut self, disp: u32) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0x8a, 0x83]).emit(&disp.to_le_bytes())
    }

    /// 64-bit only: `mov al, [abs32]` (8A 04 25 id).
    pub fn load_al(&mut self, addr: u32) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0x8a, 0x04, 0x25]).emit(&addr.to_le_bytes())
    }

    /// `add al, imm8` (04 ib).
    pub fn add_al(&mut self, value: u8) -> &mut Self {
        self.emit(&[0x04, value])
    }

    /// `out dx, al` (EE).
    pub fn out_dx_al(&mut self) -> &mut Self {
        self.emit(&[0xee])
    }

    /// 64-bit only: `mov rax, cr3; mov cr3, rax` (0F 20 D8; 0F 22 D8): flushes the TLB
    /// after the guest edited its page tables.
    pub fn reload_cr3(&mut self) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0x0f, 0x20, 0xd8, 0x0f, 0x22, 0xd8])
    }

    /// `jmp $` (EB FE): spin forever.
    pub fn spin(&mut self) -> &mut Self {
        self.emit(&[0xeb, 0xfe])
    }

    /// `int3` (CC): a breakpoint trap. With no IDT it ends in a triple fault on hardware.
    pub fn int3(&mut self) -> &mut Self {
        self.emit(&[0xcc])
    }

    /// `hlt` (F4).
    pub fn hlt(&mut self) -> &mut Self {
        self.emit(&[0xf4])
    }

    // --- loops and registers for the abuse guests (64-bit unless said otherwise) ----------

    /// The offset of the next instruction, as a jump target for [`Asm::jmp_back`] and
    /// [`Asm::loop_back`].
    pub fn label(&self) -> usize {
        self.code.len()
    }

    /// Emits a jump of opcode `short` (rel8) or `near` (rel32) back to `target`.
    fn jump_back(&mut self, target: usize, short: &[u8], near: &[u8]) -> &mut Self {
        // rel is counted from the end of the jump instruction.
        let short_end = self.code.len() + short.len() + 1;
        let rel = target as i64 - short_end as i64;
        if let Ok(rel8) = i8::try_from(rel) {
            return self.emit(short).emit(&[rel8 as u8]);
        }
        let near_end = self.code.len() + near.len() + 4;
        let rel32 = (target as i64 - near_end as i64) as i32;
        self.emit(near).emit(&rel32.to_le_bytes())
    }

    /// `jmp target` (EB rel8 / E9 rel32), in any mode.
    pub fn jmp_back(&mut self, target: usize) -> &mut Self {
        self.jump_back(target, &[0xeb], &[0xe9])
    }

    /// `dec ecx; jnz target` (FF C9; 75 rel8 / 0F 85 rel32): the end of a counted loop.
    pub fn loop_back(&mut self, target: usize) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0xff, 0xc9])
            .jump_back(target, &[0x75], &[0x0f, 0x85])
    }

    /// `mov ecx, imm32` (B9 id): a loop count.
    pub fn mov_ecx(&mut self, value: u32) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0xb9]).emit(&value.to_le_bytes())
    }

    /// `mov esi, imm32` (BE id): seeds the generator of [`Asm::xorshift_esi`].
    pub fn mov_esi(&mut self, value: u32) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0xbe]).emit(&value.to_le_bytes())
    }

    /// Advances the xorshift32 generator in esi (x ^= x << 13; x ^= x >> 17; x ^= x << 5),
    /// clobbering eax: `mov eax, esi` (89 F0), `shl/shr eax, n` (C1 E0/E8 ib), `xor esi, eax`
    /// (31 C6), three times.
    pub fn xorshift_esi(&mut self) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        for (op, shift) in [(0xe0, 13), (0xe8, 17), (0xe0, 5)] {
            self.emit(&[0x89, 0xf0, 0xc1, op, shift, 0x31, 0xc6]);
        }
        self
    }

    /// `mov eax, esi; and eax, mask` (89 F0; 25 id).
    pub fn eax_from_esi(&mut self, mask: u32) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0x89, 0xf0, 0x25]).emit(&mask.to_le_bytes())
    }

    /// `edx = base + ((esi >> shift) & mask)`: a port picked by the generator
    /// (89 F2; C1 EA ib; 81 E2 id; 81 C2 id).
    pub fn dx_from_esi(&mut self, shift: u8, mask: u32, base: u16) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0x89, 0xf2, 0xc1, 0xea, shift, 0x81, 0xe2])
            .emit(&mask.to_le_bytes())
            .emit(&[0x81, 0xc2])
            .emit(&u32::from(base).to_le_bytes())
    }

    /// `rdi = base + (esi & mask)` with `base` taken from rbx: an address picked by the
    /// generator (89 F7; 81 E7 id; 48 01 DF).
    pub fn rdi_from_esi_plus_rbx(&mut self, mask: u32) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0x89, 0xf7, 0x81, 0xe7])
            .emit(&mask.to_le_bytes())
            .emit(&[0x48, 0x01, 0xdf])
    }

    /// `edi = (esi & mask) | bits`: an address picked by the generator, below 4 GiB
    /// (89 F7; 81 E7 id; 81 CF id).
    pub fn rdi_from_esi_or(&mut self, mask: u32, bits: u32) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0x89, 0xf7, 0x81, 0xe7])
            .emit(&mask.to_le_bytes())
            .emit(&[0x81, 0xcf])
            .emit(&bits.to_le_bytes())
    }

    /// `mov ebx, imm32` (BB id; zero-extends into rbx).
    pub fn mov_ebx(&mut self, value: u32) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0xbb]).emit(&value.to_le_bytes())
    }

    /// Port I/O at dx in every width, writes then reads: `out dx, al/ax/eax` (EE; 66 EF; EF),
    /// `in al/ax/eax, dx` (EC; 66 ED; ED). The reads clobber eax.
    pub fn pio_every_width(&mut self) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0xee, 0x66, 0xef, 0xef, 0xec, 0x66, 0xed, 0xed])
    }

    /// Memory accesses at [rdi] in every width, writes of rax then reads into it:
    /// `mov [rdi], al/ax/eax/rax` (88 07; 66 89 07; 89 07; 48 89 07) and the loads
    /// (8A 07; 66 8B 07; 8B 07; 48 8B 07).
    pub fn mem_every_width_rdi(&mut self) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0x88, 0x07, 0x66, 0x89, 0x07, 0x89, 0x07, 0x48, 0x89, 0x07])
            .emit(&[0x8a, 0x07, 0x66, 0x8b, 0x07, 0x8b, 0x07, 0x48, 0x8b, 0x07])
    }

    /// 64-bit only: `inc word [abs32]` (66 FF 04 25 id).
    pub fn inc_word(&mut self, addr: u32) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        self.emit(&[0x66, 0xff, 0x04, 0x25])
            .emit(&addr.to_le_bytes())
    }

    /// 64-bit only: spins, without bound, until the byte at `addr` equals `value` (for a
    /// flag another vCPU of the guest sets): `l: cmp byte [abs32], imm8; jne l`
    /// (80 3C 25 id ib; 75 rel8).
    pub fn spin_until_byte(&mut self, addr: u32, value: u8) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Long64);
        let top = self.label();
        self.emit(&[0x80, 0x3c, 0x25])
            .emit(&addr.to_le_bytes())
            .emit(&[value])
            .jump_back(top, &[0x75], &[0x0f, 0x85])
    }

    /// Real mode only: `mov byte [abs16], imm8` (C6 06 iw ib), relative to DS.
    pub fn store_byte_real(&mut self, addr: u16, value: u8) -> &mut Self {
        debug_assert_eq!(self.bits, Bits::Real16);
        self.emit(&[0xc6, 0x06])
            .emit(&addr.to_le_bytes())
            .emit(&[value])
    }

    pub fn finish(&self) -> Vec<u8> {
        self.code.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_mode_print_encodes_mov_dx_then_out_per_byte() {
        let code = Asm::new(Bits::Real16).print(0x3f8, b"hi").finish();
        assert_eq!(
            code,
            vec![0xba, 0xf8, 0x03, 0xb0, b'h', 0xee, 0xb0, b'i', 0xee]
        );
    }

    #[test]
    fn long_mode_needs_the_operand_size_prefix_for_dx() {
        let code = Asm::new(Bits::Long64).mov_dx(0x3f8).finish();
        assert_eq!(code, vec![0x66, 0xba, 0xf8, 0x03]);
    }

    #[test]
    fn backward_jumps_pick_the_short_or_near_form_and_land_on_the_label() {
        let mut asm = Asm::new(Bits::Long64);
        let top = asm.label();
        asm.hlt();
        let short = asm.jmp_back(top).finish();
        assert_eq!(short, vec![0xf4, 0xeb, 0xfd]);
        let mut asm = Asm::new(Bits::Long64);
        let top = asm.label();
        for _ in 0..200 {
            asm.hlt();
        }
        let code = asm.loop_back(top).finish();
        // dec ecx (2) then jnz rel32 (6): rel32 counts from the end of the code.
        assert_eq!(&code[200..204], &[0xff, 0xc9, 0x0f, 0x85]);
        let rel = i32::from_le_bytes(code[204..208].try_into().expect("rel32"));
        assert_eq!(code.len() as i64 + i64::from(rel), top as i64);
    }

    #[test]
    fn wait_for_byte_jumps_back_to_the_paced_read_and_past_the_timeout_exit() {
        let code = Asm::new(Bits::Long64)
            .wait_for_byte(0x8_0202, 3, 100, 0x3fd, 0xf4, 0xe1)
            .finish();
        // mov dx (4 bytes), mov ecx (5), then the loop.
        let top = 9;
        assert_eq!(code[top], 0xec);
        let je = top + 1 + 8;
        assert_eq!(code[je], 0x74);
        // je lands just past the hlt that ends the timeout path, i.e. at the end.
        assert_eq!(je + 2 + code[je + 1] as usize, code.len());
        assert_eq!(code[code.len() - 1], 0xf4);
        let jnz = je + 4;
        assert_eq!(code[jnz], 0x75);
        let target = (jnz + 2) as isize + (code[jnz + 1] as i8) as isize;
        assert_eq!(target, top as isize);
    }

    #[test]
    fn store_abs_puts_the_immediate_after_the_address() {
        let word = Asm::new(Bits::Long64)
            .store_abs(0x8_0102, 2, 0x1234)
            .finish();
        assert_eq!(
            word,
            vec![0x66, 0xc7, 0x04, 0x25, 0x02, 0x01, 0x08, 0x00, 0x34, 0x12]
        );
    }

    #[test]
    fn count_down_jumps_back_to_the_decrement() {
        for bits in [Bits::Real16, Bits::Long64] {
            let code = Asm::new(bits).count_down(5).finish();
            let jnz = code.len() - 2;
            assert_eq!(code[jnz], 0x75);
            // rel8 is counted from the end of jnz and must land on `dec ecx` (2 bytes back
            // from jnz).
            let target = code.len() as isize + (code[jnz + 1] as i8) as isize;
            assert_eq!(target, jnz as isize - 2);
        }
    }
}
