//! The host probe and calibration against this host's real KVM, whatever it is.

use runvm_sandbox_vm::host::{self, KvmMode};

#[test]
fn calibration_agrees_with_the_detected_mode() {
    let report = host::probe(Some(50_000));
    println!("{}", report.explanation);
    let Some(cal) = report.calibration else {
        assert!(matches!(report.mode, KvmMode::Absent | KvmMode::Unusable));
        eprintln!("SKIP: KVM not usable here: {}", report.explanation);
        return;
    };
    println!("{}", cal.note);
    let hardware = cal
        .hardware_speed
        .unwrap_or_else(|| panic!("calibration failed: {}", cal.note));
    let per = cal.ns_per_iteration.expect("measured");
    assert!(per > 0.0);
    match report.mode {
        KvmMode::EmulatedPvm => assert!(!hardware, "PVM emulates, yet {per} ns/iteration"),
        KvmMode::Hardware => assert!(hardware, "hardware KVM, yet {per} ns/iteration"),
        _ => {}
    }
}
