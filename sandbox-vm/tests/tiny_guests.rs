//! Runs runvm's tiny guests on this host's /dev/kvm and checks what they print and how
//! they end. Each guest is a few dozen instructions, fine even where KVM emulates them.

use std::time::{Duration, Instant};

use runvm_sandbox_vm::arch::x86_64::cpuid::CpuidPolicy;
use runvm_sandbox_vm::{
    guest, CpuMode, DeviceConfig, ExitReason, GuestImage, IrqchipMode, SharedBuffer, Vm, VmConfig,
    VmError,
};

mod support;

use support::kvm_usable;

/// Generous: on an emulating KVM a tiny guest needs milliseconds, but the machine is shared.
const LIMIT: Option<Duration> = Some(Duration::from_secs(20));

fn run(config: &VmConfig, image: &GuestImage) -> (ExitReason, String) {
    let out = SharedBuffer::new();
    let vm = Vm::build(config, image, Box::new(out.clone())).expect("VM builds");
    let outcome = vm.run(LIMIT).expect("VM starts");
    (outcome.reason, out.text())
}

#[test]
fn real_mode_guest_prints_and_reports_its_status() {
    if !kvm_usable() {
        return;
    }
    let (reason, text) = run(&VmConfig::default(), &guest::real_mode_hello(b"hello", 7));
    assert_eq!(text, "hello");
    assert_eq!(reason, ExitReason::DebugExit { status: 7 });
    assert_eq!(reason.status(), 7);
}

#[test]
fn real_mode_guest_without_irqchip_works_too() {
    if !kvm_usable() {
        return;
    }
    let config = VmConfig {
        irqchip: IrqchipMode::Off,
        mem_size: 1 << 20,
        ..VmConfig::default()
    };
    let (reason, text) = run(&config, &guest::real_mode_hello(b"no pic", 0));
    assert_eq!(text, "no pic");
    assert_eq!(reason, ExitReason::DebugExit { status: 0 });
}

#[test]
fn long_mode_guest_runs_64_bit_code_and_powers_off_via_i8042() {
    if !kvm_usable() {
        return;
    }
    let (reason, text) = run(&VmConfig::default(), &guest::long_mode_hello(b"hello64 "));
    // 'L' comes out of a 64-bit register shift, '1' is EFER.LMA read by the guest itself.
    assert_eq!(text, "hello64 L1");
    assert_eq!(reason, ExitReason::I8042Reset);
    assert_eq!(reason.status(), 0);
}

#[test]
fn the_guest_sees_the_cpuid_policy() {
    if !kvm_usable() {
        return;
    }
    let shown = VmConfig::default();
    let (reason, text) = run(&shown, &guest::long_mode_cpuid_report());
    assert_eq!(reason, ExitReason::I8042Reset);
    assert_eq!(text, "1K", "hypervisor bit and KVM signature visible");

    let hidden = VmConfig {
        cpuid: CpuidPolicy::hidden(),
        ..VmConfig::default()
    };
    let (reason, text) = run(&hidden, &guest::long_mode_cpuid_report());
    assert_eq!(reason, ExitReason::I8042Reset);
    let bytes = text.as_bytes();
    assert_eq!(bytes.len(), 2, "{text:?}");
    assert_eq!(bytes[0], b'0', "hypervisor bit hidden");
    assert_ne!(bytes[1], b'K', "KVM signature leaf hidden");
}

#[test]
fn spinning_guest_is_stopped_by_the_timeout() {
    if !kvm_usable() {
        return;
    }
    for mode in [CpuMode::RealMode, CpuMode::LongMode] {
        let out = SharedBuffer::new();
        let vm = Vm::build(
            &VmConfig::default(),
            &guest::spin_forever(mode, b'!'),
            Box::new(out.clone()),
        )
        .expect("VM builds");
        let started = Instant::now();
        let limit = Duration::from_millis(300);
        let outcome = vm.run(Some(limit)).expect("VM starts");
        assert_eq!(outcome.reason, ExitReason::TimedOut { after: limit });
        assert_eq!(out.text(), "!", "{mode:?} guest ran before the timeout");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "stopping took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn spinning_guest_is_stopped_from_another_thread() {
    if !kvm_usable() {
        return;
    }
    let out = SharedBuffer::new();
    let vm = Vm::build(
        &VmConfig::default(),
        &guest::spin_forever(CpuMode::LongMode, b'.'),
        Box::new(out.clone()),
    )
    .expect("VM builds");
    let running = vm.start().expect("VM starts");
    let stopper = running.stopper();
    let watcher = out.clone();
    let killer = std::thread::spawn(move || {
        // Stop it once it has visibly started.
        let until = Instant::now() + Duration::from_secs(10);
        while watcher.contents().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        stopper.stop();
    });
    let outcome = running.wait(None);
    killer.join().expect("stopper thread");
    assert_eq!(outcome.reason, ExitReason::Stopped);
    assert_eq!(out.text(), ".");
}

#[test]
fn two_vcpus_with_irqchip_run_and_all_threads_end() {
    if !kvm_usable() {
        return;
    }
    let config = VmConfig {
        vcpus: 2,
        ..VmConfig::default()
    };
    let out = SharedBuffer::new();
    let vm = match Vm::build(
        &config,
        &guest::real_mode_hello(b"smp", 3),
        Box::new(out.clone()),
    ) {
        Ok(vm) => vm,
        Err(VmError::Config(msg)) if msg.contains("irqchip") => {
            eprintln!("SKIP: no in-kernel irqchip here: {msg}");
            return;
        }
        Err(e) => panic!("VM build failed: {e}"),
    };
    assert!(vm.has_irqchip());
    // vCPU 1 waits for a startup IPI that never comes: ending the VM must still join it.
    let outcome = vm.run(LIMIT).expect("VM starts");
    assert_eq!(outcome.reason, ExitReason::DebugExit { status: 3 });
    assert_eq!(out.text(), "smp");
}

#[test]
fn two_vcpus_without_irqchip_are_refused_with_a_reason() {
    if !kvm_usable() {
        return;
    }
    let config = VmConfig {
        vcpus: 2,
        irqchip: IrqchipMode::Off,
        ..VmConfig::default()
    };
    let err = Vm::build(
        &config,
        &guest::real_mode_hello(b"", 0),
        Box::new(SharedBuffer::new()),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("vcpus 2"), "{err}");
}

#[test]
fn bad_configs_name_the_offending_field() {
    if !kvm_usable() {
        return;
    }
    let image = guest::real_mode_hello(b"x", 0);
    let small = VmConfig {
        mem_size: 4096,
        ..VmConfig::default()
    };
    let err = Vm::build(&small, &image, Box::new(SharedBuffer::new())).err();
    assert!(err.expect("refused").to_string().contains("mem_size"));

    let huge = GuestImage::Code {
        mode: CpuMode::RealMode,
        code: vec![0x90; 0x10000],
    };
    let err = Vm::build(&VmConfig::default(), &huge, Box::new(SharedBuffer::new())).err();
    assert!(err.expect("refused").to_string().contains("guest code"));
}

#[test]
fn outcome_reports_timings_and_touched_guest_memory() {
    if !kvm_usable() {
        return;
    }
    let out = SharedBuffer::new();
    let vm = Vm::build(
        &VmConfig::default(),
        &guest::real_mode_hello(b"t", 1),
        Box::new(out.clone()),
    )
    .expect("VM builds");
    let outcome = vm.run(LIMIT).expect("VM starts");
    let first = outcome.first_output_after.expect("the guest printed");
    assert!(first <= outcome.exit_after && outcome.exit_after <= outcome.total);
    // At least the code page; far less than the 16 MiB of RAM.
    assert!(outcome.guest_resident_bytes >= 4096);
    assert!(outcome.guest_resident_bytes < 16 << 20);
}

#[test]
fn a_guest_the_cpu_cannot_continue_ends_with_a_reason() {
    if !kvm_usable() {
        return;
    }
    let (reason, text) = run(&VmConfig::default(), &guest::long_mode_breakpoint(b'b'));
    assert_eq!(text, "b");
    let mode = runvm_sandbox_vm::host::probe(None).mode;
    println!("int3 without an IDT on a {mode:?} host: {reason:?}");
    match reason {
        ExitReason::GuestShutdown { .. } => {
            assert_ne!(mode, runvm_sandbox_vm::host::KvmMode::EmulatedPvm)
        }
        ExitReason::VcpuError { detail, .. } => assert!(detail.contains("internal error")),
        other => panic!("unexpected end: {other:?}"),
    }
}

#[test]
fn a_guest_finds_the_host_bridge_and_a_virtio_device_on_pci() {
    if !kvm_usable() {
        return;
    }
    let config = VmConfig {
        devices: vec![DeviceConfig::Rng],
        ..VmConfig::default()
    };
    let out = SharedBuffer::new();
    let vm = Vm::build(
        &config,
        &guest::pci::long_mode_pci_scan(3, 0x21),
        Box::new(out.clone()),
    )
    .expect("VM builds");
    let outcome = vm.run(LIMIT).expect("VM starts");
    assert_eq!(outcome.reason, ExitReason::DebugExit { status: 0x21 });
    let ids: Vec<u32> = out
        .contents()
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("whole dwords")))
        .collect();
    // Host bridge (1b36:0008), virtio-rng (1af4:1044), then nothing (all ones).
    assert_eq!(ids, vec![0x0008_1b36, 0x1044_1af4, u32::MAX]);
}

#[test]
fn a_guest_without_devices_sees_only_the_host_bridge() {
    if !kvm_usable() {
        return;
    }
    let out = SharedBuffer::new();
    let vm = Vm::build(
        &VmConfig::default(),
        &guest::pci::long_mode_pci_scan(2, 0x22),
        Box::new(out.clone()),
    )
    .expect("VM builds");
    let outcome = vm.run(LIMIT).expect("VM starts");
    assert_eq!(outcome.reason, ExitReason::DebugExit { status: 0x22 });
    assert_eq!(
        out.contents(),
        [0x36, 0x1b, 0x08, 0x00, 0xff, 0xff, 0xff, 0xff]
    );
}

#[test]
fn a_guest_reads_random_bytes_through_virtio_rng() {
    if !kvm_usable() {
        return;
    }
    for irqchip in [IrqchipMode::Auto, IrqchipMode::Off] {
        let config = VmConfig {
            devices: vec![DeviceConfig::Rng],
            irqchip,
            ..VmConfig::default()
        };
        let out = SharedBuffer::new();
        let vm = Vm::build(
            &config,
            &guest::pci::long_mode_virtio_rng_read(0x23),
            Box::new(out.clone()),
        )
        .expect("VM builds");
        let outcome = vm.run(LIMIT).expect("VM starts");
        assert_eq!(
            outcome.reason,
            ExitReason::DebugExit { status: 0x23 },
            "{irqchip:?}"
        );
        let bytes = out.contents();
        let request = guest::pci::RNG_REQUEST as usize;
        assert_eq!(bytes.len(), 3 + request, "{irqchip:?}: {bytes:x?}");
        assert_eq!(
            bytes[0], 0x0f,
            "ACK|DRIVER|FEATURES_OK|DRIVER_OK, no NEEDS_RESET"
        );
        assert_eq!(bytes[1], b'1', "one used buffer");
        assert_eq!(
            usize::from(bytes[2]),
            request,
            "the device filled all of it"
        );
        assert!(
            bytes[3..].iter().any(|b| *b != 0),
            "{irqchip:?}: random bytes, not the zeroed buffer: {bytes:x?}"
        );
    }
}
