//! Hostile tiny guests on this host's /dev/kvm: a guest that floods notifications, hammers
//! config space and MMIO with garbage, or spins on one vCPU must not crash, hang or starve
//! the monitor. Every check happens on real KVM exits; a counting wrapper around virtio-rng
//! watches the device's rings from the host side.
//!
//! The tests run one at a time (they measure the process's RSS and share two cores).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use runvm_sandbox_vm::devices::virtio::rng::Rng;
use runvm_sandbox_vm::devices::virtio::{Activation, DeviceError};
use runvm_sandbox_vm::dma::DmaMemory;
use runvm_sandbox_vm::guest::abuse::{self, NotifyFlood, Spinner};
use runvm_sandbox_vm::{
    Confinement, ExitReason, IrqchipMode, SeccompMode, SharedBuffer, VirtioDevice, Vm, VmConfig,
    VmError,
};
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

mod support;

use support::{is_child, kvm_usable, run_child};

/// How long a flood runs before the monitor's timeout (or stopper) ends it.
const FLOOD: Duration = Duration::from_secs(2);
/// How much later than asked the monitor may end a flooding VM and join its threads. The
/// kick and join take milliseconds; the rest is slack for a shared 2-core machine.
const STOP_MARGIN: Duration = Duration::from_millis(1500);
/// A limit for guests that end by themselves: reaching it fails the test.
const LIMIT: Duration = Duration::from_secs(20);
/// The monitor's RSS may grow this much while a flood runs (guest pages it touches, the
/// allocator's slack); a leak per notification would show as megabytes per second.
const RSS_GROWTH_LIMIT_KIB: u64 = 4096;

/// Serializes the tests of this file: RSS is per process and the guests are CPU-bound.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Panics on vCPU threads since the process started (a device or exit handler panicking on
/// guest input would end the thread silently otherwise).
fn vcpu_panics() -> u64 {
    static PANICS: AtomicU64 = AtomicU64::new(0);
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if thread.name().is_some_and(|n| n.starts_with("vcpu")) {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

/// This process's resident set in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `f` on its own thread and fails the test if it takes longer than `limit`: a monitor
/// that hangs fails here instead of hanging the test run.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    match result.recv_timeout(limit) {
        Ok(value) => value,
        Err(e) => panic!("the monitor did not finish within {limit:?}: {e}"),
    }
}

// ---- a virtio-rng whose queue the test watches ----------------------------------------

/// What the device did, seen from the host after every notification.
#[derive(Debug, Default)]
struct QueueWatch {
    notifies: AtomicU64,
    /// Buffers the driver offered (the avail index's advance, from 0).
    offered: AtomicU64,
    /// Buffers the device returned (the used index's advance, from 0).
    used: AtomicU64,
    /// The most buffers one notification returned.
    most_in_one: AtomicU64,
    /// Notifications after which offered buffers were left unreturned.
    left_behind: AtomicU64,
    /// Time spent inside the device's notification handler.
    busy_ns: AtomicU64,
    longest_ns: AtomicU64,
    /// Accesses to the device-specific configuration space, activations and resets.
    config_accesses: AtomicU64,
    activations: AtomicU64,
    resets: AtomicU64,
}

impl QueueWatch {
    fn get(field: &AtomicU64) -> u64 {
        field.load(Ordering::SeqCst)
    }
}

/// The rings of the active queue, read through the device's own view of guest memory.
struct Rings {
    memory: DmaMemory,
    avail: u64,
    used: u64,
    last_avail: u16,
    last_used: u16,
}

impl Rings {
    fn index(&self, ring: u64) -> u16 {
        // Both rings start with flags (u16), then idx (u16).
        self.memory
            .read_obj::<u16>(GuestAddress(ring + 2))
            .unwrap_or(0)
    }
}

/// virtio-rng, counting what each notification made it do.
struct WatchedRng {
    inner: Rng,
    watch: Arc<QueueWatch>,
    rings: Option<Rings>,
}

impl WatchedRng {
    fn new(watch: Arc<QueueWatch>) -> Self {
        WatchedRng {
            inner: Rng::new(),
            watch,
            rings: None,
        }
    }
}

impl VirtioDevice for WatchedRng {
    fn device_type(&self) -> u32 {
        self.inner.device_type()
    }
    fn queue_max_sizes(&self) -> &[u16] {
        self.inner.queue_max_sizes()
    }
    fn offered_features(&self) -> u64 {
        self.inner.offered_features()
    }
    fn ack_features(&mut self, features: u64) {
        self.inner.ack_features(features);
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.watch.config_accesses.fetch_add(1, Ordering::SeqCst);
        self.inner.read_config(offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.watch.config_accesses.fetch_add(1, Ordering::SeqCst);
        self.inner.write_config(offset, data);
    }
    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError> {
        self.watch.activations.fetch_add(1, Ordering::SeqCst);
        self.rings = activation.queues.first().map(|q| Rings {
            memory: activation.memory.clone(),
            avail: q.avail_ring(),
            used: q.used_ring(),
            last_avail: 0,
            last_used: 0,
        });
        self.inner.activate(activation)
    }
    fn queue_notify(&mut self, queue: u16) {
        let started = Instant::now();
        self.inner.queue_notify(queue);
        let took = started.elapsed().as_nanos() as u64;
        let w = &self.watch;
        w.notifies.fetch_add(1, Ordering::SeqCst);
        w.busy_ns.fetch_add(took, Ordering::SeqCst);
        w.longest_ns.fetch_max(took, Ordering::SeqCst);
        let Some(rings) = self.rings.as_mut() else {
            return;
        };
        let (avail, used) = (rings.index(rings.avail), rings.index(rings.used));
        let returned = used.wrapping_sub(rings.last_used);
        w.offered.fetch_add(
            u64::from(avail.wrapping_sub(rings.last_avail)),
            Ordering::SeqCst,
        );
        w.used.fetch_add(u64::from(returned), Ordering::SeqCst);
        w.most_in_one
            .fetch_max(u64::from(returned), Ordering::SeqCst);
        if avail != used {
            w.left_behind.fetch_add(1, Ordering::SeqCst);
        }
        (rings.last_avail, rings.last_used) = (avail, used);
    }
    fn reset(&mut self) {
        self.watch.resets.fetch_add(1, Ordering::SeqCst);
        self.rings = None;
        self.inner.reset();
    }
}

// ---- the notification flood -----------------------------------------------------------

/// How the flooding VM is ended.
#[derive(Debug, Clone, Copy)]
enum End {
    /// By its run timeout.
    Timeout,
    /// By a [`runvm_sandbox_vm::VmStopper`] from another thread.
    Stopper,
}

struct FloodRun {
    reason: ExitReason,
    text: String,
    /// From asking the VM to end (timeout expiry or stop call) to all threads joined.
    stop_latency: Duration,
    rss_growth_kib: u64,
    watch: Arc<QueueWatch>,
}

/// Runs the flood guest for [`FLOOD`], sampling the monitor's RSS once the flood is under
/// way, and ends it as `end` says.
fn run_flood(flood: NotifyFlood, end: End, confinement: Option<Confinement>) -> FloodRun {
    let watch = Arc::new(QueueWatch::default());
    let out = SharedBuffer::new();
    let config = VmConfig {
        confinement,
        ..VmConfig::default()
    };
    let vm = Vm::build_with_devices(
        &config,
        &abuse::long_mode_rng_notify_flood(flood),
        Box::new(out.clone()),
        vec![Box::new(WatchedRng::new(Arc::clone(&watch)))],
    )
    .expect("VM builds");
    let started = Instant::now();
    let running = vm.start().expect("VM starts");
    let stopper = running.stopper();
    let sampler_watch = Arc::clone(&watch);
    let flooding = out.clone();
    let sampler = std::thread::spawn(move || {
        // The baseline is taken once the guest floods (its setup is done: it printed 'F'
        // and the device saw a notification), the peak until just before the end.
        while (flooding.contents().is_empty() || QueueWatch::get(&sampler_watch.notifies) == 0)
            && started.elapsed() < FLOOD
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let baseline = rss_kib();
        let mut peak = baseline;
        let last_sample = FLOOD.saturating_sub(Duration::from_millis(100));
        while started.elapsed() < last_sample {
            peak = peak.max(rss_kib());
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(end, End::Stopper) {
            stopper.stop();
        }
        (baseline, peak, Instant::now())
    });
    let wait = match end {
        End::Timeout => FLOOD,
        End::Stopper => LIMIT,
    };
    let outcome = within(wait + LIMIT, move || running.wait(Some(wait)));
    let joined = Instant::now();
    let (baseline, peak, stopped_at) = sampler.join().expect("sampler thread");
    let asked = match end {
        End::Timeout => started + FLOOD,
        End::Stopper => stopped_at,
    };
    FloodRun {
        reason: outcome.reason,
        text: out.text(),
        stop_latency: joined.saturating_duration_since(asked),
        rss_growth_kib: peak.saturating_sub(baseline),
        watch,
    }
}

/// The checks every flood must pass: ended when asked, promptly, with bounded memory, and
/// the device did exactly the work the guest offered (never more, and none left behind).
fn check_flood(run: &FloodRun, end: End, offered: Option<u64>) {
    let w = &run.watch;
    let notifies = QueueWatch::get(&w.notifies);
    let used = QueueWatch::get(&w.used);
    let busy = Duration::from_nanos(QueueWatch::get(&w.busy_ns));
    let longest = Duration::from_nanos(QueueWatch::get(&w.longest_ns));
    println!(
        "{end:?}: {notifies} notifications, {used} buffers used, device busy {busy:?} \
         (longest {longest:?}), stopped {:?} after asked, RSS +{} KiB",
        run.stop_latency, run.rss_growth_kib
    );
    match end {
        End::Timeout => assert_eq!(run.reason, ExitReason::TimedOut { after: FLOOD }),
        End::Stopper => assert_eq!(run.reason, ExitReason::Stopped),
    }
    assert_eq!(run.text, "F", "the guest set up the device and flooded");
    assert!(
        run.stop_latency < STOP_MARGIN,
        "ended {:?} after asked",
        run.stop_latency
    );
    assert!(notifies >= 100, "only {notifies} notifications: no flood");
    assert!(
        run.rss_growth_kib < RSS_GROWTH_LIMIT_KIB,
        "RSS grew {} KiB during the flood",
        run.rss_growth_kib
    );
    // Work per notification stays small: no spinning on an empty (or any) queue.
    assert!(
        busy / u32::try_from(notifies).unwrap_or(u32::MAX) < Duration::from_millis(1),
        "{busy:?} in {notifies} notifications"
    );
    assert!(longest < STOP_MARGIN, "one notification took {longest:?}");
    assert_eq!(
        QueueWatch::get(&w.offered),
        used,
        "every offered buffer returned, no more"
    );
    assert_eq!(
        QueueWatch::get(&w.left_behind),
        0,
        "a notification left offered buffers behind"
    );
    match offered {
        Some(buffers) => {
            assert_eq!(used, buffers);
            assert_eq!(QueueWatch::get(&w.most_in_one), buffers, "all on the first");
        }
        None => {
            assert_eq!(used, notifies, "one new buffer per notification");
            assert_eq!(QueueWatch::get(&w.most_in_one), 1);
        }
    }
}

#[test]
fn a_notification_flood_on_an_empty_queue_is_bounded_and_stopped_by_the_timeout() {
    if !kvm_usable() {
        return;
    }
    let _serial = one_at_a_time();
    let panics = vcpu_panics();
    let buffers = 3;
    let run = run_flood(NotifyFlood::OfferedOnce { buffers }, End::Timeout, None);
    check_flood(&run, End::Timeout, Some(u64::from(buffers)));
    // Two invalid notifications (each a guest error the transport records) per valid one.
    let run = run_flood(NotifyFlood::StrayNotifies, End::Timeout, None);
    check_flood(&run, End::Timeout, Some(1));
    assert_eq!(vcpu_panics(), panics);
}

#[test]
fn a_notification_flood_with_new_buffers_is_bounded_and_stopped_by_a_stopper() {
    if !kvm_usable() {
        return;
    }
    let _serial = one_at_a_time();
    let panics = vcpu_panics();
    for end in [End::Stopper, End::Timeout] {
        let run = run_flood(NotifyFlood::NewBufferEach, end, None);
        check_flood(&run, end, None);
    }
    assert_eq!(vcpu_panics(), panics);
}

// ---- the same flood under the monitor's seccomp filters --------------------------------

#[test]
fn a_notification_flood_needs_no_call_outside_the_vcpu_filter() {
    let name = "a_notification_flood_needs_no_call_outside_the_vcpu_filter";
    if is_child(name) {
        let seccomp = match std::env::var("MODE").as_deref() {
            Ok("report") => SeccompMode::Report,
            _ => SeccompMode::Kill,
        };
        let confinement = Confinement {
            seccomp: Some(seccomp),
            ..Confinement::standard()
        };
        let buffers = 2;
        let once = NotifyFlood::OfferedOnce { buffers };
        let run = run_flood(once, End::Timeout, Some(confinement.clone()));
        check_flood(&run, End::Timeout, Some(u64::from(buffers)));
        let run = run_flood(NotifyFlood::NewBufferEach, End::Stopper, Some(confinement));
        check_flood(&run, End::Stopper, None);
        println!("CONFINED-FLOOD-OK");
        return;
    }
    if !kvm_usable() {
        return;
    }
    let _serial = one_at_a_time();
    // Report mode first: it names every refused call instead of dying on the first.
    for mode in ["report", "kill"] {
        let output = run_child(name, &[("MODE", mode)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("refused syscall"), "{mode}: {stderr}");
        assert!(output.status.success(), "{mode}: {:?}", output.status);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("CONFINED-FLOOD-OK"), "{mode}: {stdout}");
    }
}

// ---- garbage in config space and MMIO --------------------------------------------------

#[test]
fn garbage_config_and_mmio_accesses_leave_the_monitor_working() {
    if !kvm_usable() {
        return;
    }
    let _serial = one_at_a_time();
    let panics = vcpu_panics();
    let iterations = 4000;
    for (irqchip, seed, status) in [
        (IrqchipMode::Auto, 0x2545_f491, 0x31),
        (IrqchipMode::Off, 0x9e37_79b9, 0x32),
    ] {
        let config = VmConfig {
            irqchip,
            ..VmConfig::default()
        };
        let out = SharedBuffer::new();
        let watch = Arc::new(QueueWatch::default());
        let image = abuse::long_mode_register_garbage(iterations, seed, status);
        let vm = Vm::build_with_devices(
            &config,
            &image,
            Box::new(out.clone()),
            vec![Box::new(WatchedRng::new(Arc::clone(&watch)))],
        )
        .expect("VM builds");
        let started = Instant::now();
        let outcome = within(2 * LIMIT, move || vm.run(Some(LIMIT))).expect("VM starts");
        let reached = QueueWatch::get(&watch.config_accesses);
        println!(
            "{irqchip:?}: {iterations} rounds of garbage (48 exits each) in {:?}; the device \
             saw {reached} config accesses, {} activations, {} resets, {} notifications",
            started.elapsed(),
            QueueWatch::get(&watch.activations),
            QueueWatch::get(&watch.resets),
            QueueWatch::get(&watch.notifies),
        );
        assert!(
            reached > 0,
            "{irqchip:?}: no garbage reached the device model"
        );
        assert_eq!(
            outcome.reason,
            ExitReason::DebugExit { status },
            "{irqchip:?}"
        );
        let mut expected = b"G".to_vec();
        // The rng's vendor/device ids are read-only: garbage writes left them alone.
        expected.extend_from_slice(&0x1044_1af4u32.to_le_bytes());
        assert_eq!(out.contents(), expected, "{irqchip:?}");
    }
    assert_eq!(vcpu_panics(), panics, "a vCPU thread panicked");
}

// ---- one vCPU spins, the other ends the VM ---------------------------------------------

fn run_two_cpus(spinner: Spinner, busy_iterations: u32, status: u8) -> Option<(String, Duration)> {
    let config = VmConfig {
        vcpus: 2,
        ..VmConfig::default()
    };
    let out = SharedBuffer::new();
    let image = abuse::long_mode_two_cpus_one_spins(spinner, busy_iterations, status);
    let vm = match Vm::build(&config, &image, Box::new(out.clone())) {
        Ok(vm) => vm,
        Err(VmError::Config(msg)) if msg.contains("irqchip") => {
            eprintln!("SKIP: no in-kernel irqchip here: {msg}");
            return None;
        }
        Err(e) => panic!("VM build failed: {e}"),
    };
    let started = Instant::now();
    let outcome = within(2 * LIMIT, move || vm.run(Some(LIMIT))).expect("VM starts");
    let join = outcome.total.saturating_sub(outcome.exit_after);
    println!(
        "{spinner:?} spins: ended after {:?}, threads joined {join:?} later ({:?} wall)",
        outcome.exit_after,
        started.elapsed()
    );
    assert_eq!(
        outcome.reason,
        ExitReason::DebugExit { status },
        "{spinner:?}"
    );
    Some((out.text(), join))
}

#[test]
fn a_spinning_vcpu_neither_starves_nor_blocks_the_other_ending_the_vm() {
    if !kvm_usable() {
        return;
    }
    let _serial = one_at_a_time();
    // vCPU 1 spins from its first instructions while vCPU 0 runs a loop beside it, then exits.
    let Some((text, join)) = run_two_cpus(Spinner::SecondCpu, 100_000, 0x41) else {
        return;
    };
    assert_eq!(text, "ABE", "vCPU 1 ran, then vCPU 0 finished beside it");
    assert!(
        join < STOP_MARGIN,
        "joining the spinning vCPU took {join:?}"
    );
    // vCPU 0 spins; the VM ends from vCPU 1.
    let Some((text, join)) = run_two_cpus(Spinner::BootCpu, 0, 0x42) else {
        return;
    };
    assert_eq!(text, "A");
    assert!(
        join < STOP_MARGIN,
        "joining the spinning vCPU took {join:?}"
    );
}
