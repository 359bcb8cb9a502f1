//! Stopping a vCPU that is inside KVM_RUN, from another thread.
//!
//! The controller sets the VM's stop flag, then sends the kick signal to each vCPU thread.
//! The handler sets `immediate_exit` in that thread's `kvm_run`, so KVM_RUN returns EINTR
//! whether the signal lands during the run or just before the next one (a plain signal
//! would be lost in that window). Hand-written: kvm-ioctls exposes the flag, not this dance.

use std::cell::Cell;
use std::sync::OnceLock;

use kvm_bindings::kvm_run;
use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use crate::error::VmError;

thread_local! {
    /// The `kvm_run` of the vCPU this thread runs, or null.
    static CURRENT_KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The real-time signal used to kick vCPU threads.
pub fn kick_signal() -> c_int {
    SIGRTMIN()
}

extern "C" fn on_kick(_: c_int, _: *mut siginfo_t, _: *mut c_void) {
    let _ = CURRENT_KVM_RUN.try_with(|current| {
        let run = current.get();
        if !run.is_null() {
            // SAFETY: the pointer is set by this thread to its own live kvm_run mapping and
            // cleared before that mapping goes away; a volatile byte store is signal-safe.
            unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
        }
    });
}

/// Installs the kick handler once per process.
pub fn install_handler() -> Result<(), VmError> {
    static INSTALLED: OnceLock<Result<(), vmm_sys_util::errno::Error>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| register_signal_handler(kick_signal(), on_kick))
        .map_err(VmError::KickSignal)
}

/// While alive, kicks on this thread set `immediate_exit` in `run`.
pub struct KickTarget(());

impl KickTarget {
    /// `run` must stay mapped until the returned guard is dropped.
    pub fn arm(run: &mut kvm_run) -> KickTarget {
        CURRENT_KVM_RUN.with(|current| current.set(run));
        KickTarget(())
    }
}

impl Drop for KickTarget {
    fn drop(&mut self) {
        CURRENT_KVM_RUN.with(|current| current.set(std::ptr::null_mut()));
    }
}

/// Sets `stop`, kicks each vCPU thread out of KVM_RUN and joins it.
pub fn stop_and_join(
    stop: &std::sync::atomic::AtomicBool,
    threads: impl IntoIterator<Item = std::thread::JoinHandle<()>>,
) {
    use vmm_sys_util::signal::Killable;
    stop.store(true, std::sync::atomic::Ordering::Release);
    for thread in threads {
        // One kick suffices (it sets immediate_exit); re-kick in case the thread was between
        // checks, and stop waiting on a thread only when it has finished.
        while !thread.is_finished() {
            let _ = thread.kill(kick_signal());
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // The vCPU loop does not panic on guest input; a panic is already reported on stderr
        // by the thread itself.
        let _ = thread.join();
    }
}
