//! The monitor confining itself: per-thread seccomp filters, no capabilities, own cgroup,
//! namespaces and jail. Every confinement happens in a child process (this test binary run
//! again for one test), so the test binary itself stays unconfined and sees how it ended.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use runvm_sandbox_vm::confine::workers::spawn_device_worker;
use runvm_sandbox_vm::confine::{ConfinedMonitor, ThreadFilter};
use runvm_sandbox_vm::{
    guest, CgroupPlacement, Confinement, ExitReason, GuestImage, Isolation, Namespace, SeccompMode,
    SharedBuffer, ThreadKind, Vm, VmConfig,
};

mod support;

use support::{is_child, kvm_usable, run_child};

const LIMIT: Option<Duration> = Some(Duration::from_secs(20));

/// Every hierarchy but memory: the test process's memory cgroup belongs to whatever runs
/// the tests, and the tests do not move out of it.
const TEST_HIERARCHIES: [&str; 6] = [
    "cpu",
    "cpuset",
    "pids",
    "freezer",
    "name=systemd",
    "cgroup2",
];

fn test_cgroup(path: &str) -> CgroupPlacement {
    CgroupPlacement {
        path: path.into(),
        hierarchies: TEST_HIERARCHIES.iter().map(|h| h.to_string()).collect(),
    }
}

/// The /proc/self/cgroup lines of the hierarchies the tests use.
fn test_hierarchy_lines(membership: &str) -> Vec<&str> {
    membership
        .lines()
        .filter(|l| {
            let controllers = l.split(':').nth(1).unwrap_or_default();
            TEST_HIERARCHIES.iter().any(|h| {
                (*h == "cgroup2" && controllers.is_empty())
                    || controllers.split(',').any(|c| c == *h)
            })
        })
        .collect()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `call` on a new thread that first installs the `kind` filter in `mode`.
fn on_filtered_thread<T: Send + 'static>(
    kind: ThreadKind,
    mode: SeccompMode,
    call: impl FnOnce() -> T + Send + 'static,
) -> T {
    let filter = ThreadFilter::new(kind, mode).expect("filter compiles");
    std::thread::spawn(move || {
        filter.install().expect("filter installs");
        call()
    })
    .join()
    .expect("filtered thread returns")
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("{field} missing from /proc status"))
}

// ---- seccomp -------------------------------------------------------------------------

#[test]
fn a_vcpu_thread_opening_a_socket_kills_the_monitor_with_sigsys() {
    let name = "a_vcpu_thread_opening_a_socket_kills_the_monitor_with_sigsys";
    if is_child(name) {
        on_filtered_thread(ThreadKind::Vcpu, SeccompMode::Kill, || {
            // Allowed calls still work under the filter...
            println!("alive under the vCPU filter");
            // SAFETY: socket(2) with constant arguments; the filter kills the process.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            println!("socket returned {fd}: not refused");
        });
        return;
    }
    let output = run_child(name, &[]);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGSYS),
        "{:?}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("alive under the vCPU filter"));
    assert!(!stdout.contains("not refused"));
}

#[test]
fn a_vcpu_thread_may_not_exec() {
    let name = "a_vcpu_thread_may_not_exec";
    if is_child(name) {
        on_filtered_thread(ThreadKind::Vcpu, SeccompMode::Kill, || {
            let err = std::process::Command::new("/bin/true").status();
            println!("spawn returned {err:?}: not refused");
        });
        return;
    }
    let output = run_child(name, &[]);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGSYS),
        "{:?}",
        output.status
    );
}

#[test]
fn a_vcpu_thread_may_issue_kvm_run_but_no_other_ioctl() {
    let name = "a_vcpu_thread_may_issue_kvm_run_but_no_other_ioctl";
    if is_child(name) {
        on_filtered_thread(ThreadKind::Vcpu, SeccompMode::Kill, || {
            // KVM_RUN on a non-KVM fd passes the filter and fails in the kernel (ENOTTY).
            // SAFETY: ioctl on stdin with a request the tty layer rejects; no pointer used.
            let rc = unsafe { libc::ioctl(0, 0xae80, 0) };
            println!("KVM_RUN allowed: rc {rc}");
            let mut size: libc::winsize =
                // SAFETY: winsize is plain integers.
                unsafe { std::mem::zeroed() };
            // SAFETY: TIOCGWINSZ writes one winsize to the given, live buffer.
            let rc = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut size) };
            println!("TIOCGWINSZ returned {rc}: not refused");
        });
        return;
    }
    let output = run_child(name, &[]);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGSYS),
        "{:?}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("KVM_RUN allowed"), "{stdout}");
    assert!(!stdout.contains("not refused"));
}

#[test]
fn report_mode_names_the_refused_call_and_the_thread_goes_on() {
    let name = "report_mode_names_the_refused_call_and_the_thread_goes_on";
    if is_child(name) {
        let errno = on_filtered_thread(ThreadKind::Vcpu, SeccompMode::Report, || {
            // SAFETY: socket(2) with constant arguments.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            (fd, std::io::Error::last_os_error().raw_os_error())
        });
        assert_eq!(errno, (-1, Some(libc::ENOSYS)));
        return;
    }
    let output = run_child(name, &[]);
    assert!(output.status.success(), "{:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!("refused syscall {:010}", libc::SYS_socket);
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn a_device_worker_may_use_unix_sockets_but_not_inet_ones() {
    let name = "a_device_worker_may_use_unix_sockets_but_not_inet_ones";
    if is_child(name) {
        on_filtered_thread(ThreadKind::DeviceWorker, SeccompMode::Kill, || {
            let pair = std::os::unix::net::UnixStream::pair();
            println!("unix socket pair: {}", pair.is_ok());
            // SAFETY: socket(2) with constant arguments; the filter kills the process.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
            println!("inet socket returned {fd}: not refused");
        });
        return;
    }
    let output = run_child(name, &[]);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGSYS),
        "{:?}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("unix socket pair: true"), "{stdout}");
}

#[test]
fn a_vcpu_thread_starts_device_workers_that_run_under_the_worker_filter() {
    // Devices start their workers on activation, on a vCPU thread: the worker must get the
    // worker list (unix sockets work), not the vCPU list, and nothing beyond it.
    let name = "a_vcpu_thread_starts_device_workers_that_run_under_the_worker_filter";
    if is_child(name) {
        let monitor = ConfinedMonitor::enter(&Confinement {
            drop_privileges: false,
            ..Confinement::standard()
        })
        .expect("confine");
        let vcpu_filter = monitor.vcpu_filter().expect("a vCPU filter");
        let vcpu = std::thread::spawn(move || {
            vcpu_filter.install().expect("vCPU filter installs");
            spawn_device_worker("test-worker", || {
                let pair = std::os::unix::net::UnixStream::pair();
                println!("worker unix socket pair: {}", pair.is_ok());
                // SAFETY: socket(2) with constant arguments; the filter kills the process.
                let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
                println!("worker inet socket returned {fd}: not refused");
            })
            .expect("worker starts from a vCPU thread")
        });
        let worker = vcpu.join().expect("vCPU thread returns");
        let _ = worker.join();
        return;
    }
    let output = run_child(name, &[]);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGSYS),
        "{:?}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("worker unix socket pair: true"), "{stdout}");
    assert!(!stdout.contains("not refused"), "{stdout}");
}

// ---- a whole VM ----------------------------------------------------------------------

/// The strictest confinement this process can apply: with root also its own cgroup, every
/// namespace that fits and a jail in `jail`.
fn strictest(jail: &Path, cgroup: &str) -> Confinement {
    let mut policy = Confinement {
        filter_starting_thread: true,
        ..Confinement::standard()
    };
    if is_root() {
        policy.isolation = Some(Isolation {
            cgroup: Some(test_cgroup(cgroup)),
            namespaces: vec![
                Namespace::Mount,
                Namespace::Ipc,
                Namespace::Uts,
                Namespace::Net,
            ],
            jail: Some(jail.to_path_buf()),
        });
    }
    policy
}

fn run_confined(image: &GuestImage, mode: SeccompMode) -> (ExitReason, String) {
    let jail = std::env::var("JAIL").expect("JAIL set by the parent");
    let cgroup = std::env::var("CGROUP").expect("CGROUP set by the parent");
    let mut confinement = strictest(Path::new(&jail), &cgroup);
    confinement.seccomp = Some(mode);
    let config = VmConfig {
        confinement: Some(confinement),
        ..VmConfig::default()
    };
    let out = SharedBuffer::new();
    let vm = Vm::build(&config, image, Box::new(out.clone())).expect("VM builds");
    let outcome = vm.run(LIMIT).expect("VM starts confined");
    (outcome.reason, out.text())
}

#[test]
fn confined_tiny_guests_end_with_their_status() {
    let name = "confined_tiny_guests_end_with_their_status";
    if is_child(name) {
        let mode = match std::env::var("MODE").as_deref() {
            Ok("report") => SeccompMode::Report,
            _ => SeccompMode::Kill,
        };
        let (reason, text) = run_confined(&guest::real_mode_hello(b"jailed", 9), mode);
        assert_eq!(text, "jailed");
        assert_eq!(reason, ExitReason::DebugExit { status: 9 });
        // The starting thread runs under the main filter now: printing still works.
        println!("CONFINED-OK status {}", reason.status());
        return;
    }
    if !kvm_usable() {
        return;
    }
    if !is_root() {
        eprintln!("SKIP (partly): not root: no cgroup, namespaces or jail, only filters");
    }
    let jail = tempfile::tempdir().expect("jail dir");
    let cgroup = format!("runvm-confine-test-{}", std::process::id());
    let jail_path = jail.path().to_string_lossy().into_owned();
    // Report mode first: it lists every refused call instead of dying on the first.
    for mode in ["report", "kill"] {
        let env = [
            ("JAIL", jail_path.as_str()),
            ("CGROUP", &cgroup),
            ("MODE", mode),
        ];
        let output = run_child(name, &env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("refused syscall"), "{mode}: {stderr}");
        assert!(output.status.success(), "{mode}: {:?}", output.status);
        assert!(String::from_utf8_lossy(&output.stdout).contains("CONFINED-OK status 9"));
    }
    // The monitor left and removed its cgroup in every hierarchy.
    for entry in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten() {
        let Ok(entry) = entry else { continue };
        let leftover = entry.path().join(&cgroup);
        assert!(!leftover.exists(), "{} left behind", leftover.display());
    }
}

#[test]
fn a_confined_vm_stopped_by_its_timeout_still_joins_and_reports() {
    let name = "a_confined_vm_stopped_by_its_timeout_still_joins_and_reports";
    if is_child(name) {
        let config = VmConfig {
            confinement: Some(Confinement {
                filter_starting_thread: true,
                ..Confinement::standard()
            }),
            // The second vCPU sits in KVM_RUN waiting for a startup IPI: kicked out too.
            vcpus: 2,
            ..VmConfig::default()
        };
        let image = guest::spin_forever(runvm_sandbox_vm::CpuMode::LongMode, b'!');
        let vm = Vm::build(&config, &image, Box::new(SharedBuffer::new())).expect("VM builds");
        let limit = Duration::from_millis(300);
        let outcome = vm.run(Some(limit)).expect("VM starts");
        assert_eq!(outcome.reason, ExitReason::TimedOut { after: limit });
        println!("TIMEOUT-OK");
        return;
    }
    if !kvm_usable() {
        return;
    }
    let output = run_child(name, &[]);
    assert!(output.status.success(), "{:?}", output.status);
    assert!(String::from_utf8_lossy(&output.stdout).contains("TIMEOUT-OK"));
}

// ---- privileges and isolation --------------------------------------------------------

#[test]
fn no_capabilities_remain_after_confinement_on_any_later_thread() {
    let name = "no_capabilities_remain_after_confinement_on_any_later_thread";
    if is_child(name) {
        let policy = Confinement {
            seccomp: None,
            ..Confinement::standard()
        };
        let _confined = ConfinedMonitor::enter(&policy).expect("confinement applies");
        let here = std::fs::read_to_string("/proc/thread-self/status").expect("own status");
        let later = std::thread::spawn(|| std::fs::read_to_string("/proc/thread-self/status"))
            .join()
            .expect("thread")
            .expect("thread status");
        for status in [here, later] {
            for field in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
                assert_eq!(status_field(&status, field), "0000000000000000", "{field}");
            }
            assert_eq!(status_field(&status, "NoNewPrivs:"), "1");
        }
        println!("CAPS-GONE");
        return;
    }
    if !is_root() {
        eprintln!("SKIP: not root: there are no capabilities to drop");
        return;
    }
    let output = run_child(name, &[]);
    assert!(output.status.success(), "{:?}", output.status);
    assert!(String::from_utf8_lossy(&output.stdout).contains("CAPS-GONE"));
}

fn namespace_ids() -> Vec<String> {
    ["mnt", "ipc", "uts", "net"]
        .iter()
        .map(|ns| {
            std::fs::read_link(format!("/proc/thread-self/ns/{ns}"))
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn isolation_gives_new_namespaces_and_an_own_cgroup_that_is_removed() {
    let name = "isolation_gives_new_namespaces_and_an_own_cgroup_that_is_removed";
    if is_child(name) {
        let cgroup = std::env::var("CGROUP").expect("CGROUP set by the parent");
        let before = namespace_ids();
        let policy = Confinement {
            seccomp: None,
            drop_privileges: false,
            filter_starting_thread: false,
            isolation: Some(Isolation {
                cgroup: Some(test_cgroup(&cgroup)),
                namespaces: vec![
                    Namespace::Mount,
                    Namespace::Ipc,
                    Namespace::Uts,
                    Namespace::Net,
                ],
                jail: None,
            }),
        };
        let confined = ConfinedMonitor::enter(&policy).expect("isolation applies");
        let after = namespace_ids();
        for (b, a) in before.iter().zip(&after) {
            assert_ne!(b, a, "namespace unchanged");
        }
        let membership = std::fs::read_to_string("/proc/self/cgroup").expect("cgroup file");
        let lines = test_hierarchy_lines(&membership);
        assert_eq!(lines.len(), TEST_HIERARCHIES.len(), "{membership}");
        for line in lines {
            assert!(line.ends_with(&format!("/{cgroup}")), "{line}");
        }
        drop(confined);
        let membership = std::fs::read_to_string("/proc/self/cgroup").expect("cgroup file");
        assert!(!membership.contains(&cgroup), "{membership}");
        println!("ISOLATED");
        return;
    }
    if !is_root() {
        eprintln!("SKIP: not root: cannot create cgroups or namespaces");
        return;
    }
    let cgroup = format!("runvm-confine-ns-test-{}/vm", std::process::id());
    let output = run_child(name, &[("CGROUP", &cgroup)]);
    assert!(output.status.success(), "{:?}", output.status);
    assert!(String::from_utf8_lossy(&output.stdout).contains("ISOLATED"));
    let top = cgroup.split('/').next().unwrap_or_default();
    for entry in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten() {
        let Ok(entry) = entry else { continue };
        assert!(
            !entry.path().join(top).exists(),
            "{} left",
            entry.path().display()
        );
    }
}

#[test]
fn the_jail_becomes_the_whole_filesystem() {
    let name = "the_jail_becomes_the_whole_filesystem";
    if is_child(name) {
        let jail = std::env::var("JAIL").expect("JAIL set by the parent");
        let policy = Confinement {
            seccomp: None,
            drop_privileges: true,
            filter_starting_thread: false,
            isolation: Some(Isolation {
                cgroup: None,
                namespaces: vec![Namespace::Mount],
                jail: Some(jail.into()),
            }),
        };
        let _confined = ConfinedMonitor::enter(&policy).expect("jail applies");
        let names: Vec<String> = std::fs::read_dir("/")
            .expect("new root readable")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, ["only-this"]);
        assert!(!Path::new("/proc/self").exists());
        assert!(!Path::new("/dev/kvm").exists());
        println!("JAILED");
        return;
    }
    if !is_root() {
        eprintln!("SKIP: not root: cannot create a mount namespace");
        return;
    }
    let jail = tempfile::tempdir().expect("jail dir");
    std::fs::write(jail.path().join("only-this"), b"x").expect("jail file");
    let output = run_child(name, &[("JAIL", &jail.path().to_string_lossy())]);
    assert!(output.status.success(), "{:?}", output.status);
    assert!(String::from_utf8_lossy(&output.stdout).contains("JAILED"));
    // Nothing leaked to the host's mount table.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&*jail.path().to_string_lossy()));
}

#[test]
fn a_jail_without_a_mount_namespace_is_refused_by_name() {
    let policy = Confinement {
        seccomp: None,
        drop_privileges: false,
        filter_starting_thread: false,
        isolation: Some(Isolation {
            cgroup: None,
            namespaces: vec![],
            jail: Some("/nonexistent".into()),
        }),
    };
    let err = ConfinedMonitor::enter(&policy).err().expect("refused");
    assert!(err.to_string().contains("isolation.jail"), "{err}");
}

#[test]
fn a_monitor_killed_by_its_filter_still_loses_its_cgroup() {
    let name = "a_monitor_killed_by_its_filter_still_loses_its_cgroup";
    if is_child(name) {
        let cgroup = std::env::var("CGROUP").expect("CGROUP set by the parent");
        let policy = Confinement {
            isolation: Some(Isolation {
                cgroup: Some(test_cgroup(&cgroup)),
                ..Isolation::default()
            }),
            ..Confinement::standard()
        };
        let _confined = ConfinedMonitor::enter(&policy).expect("confinement applies");
        on_filtered_thread(ThreadKind::Vcpu, SeccompMode::Kill, || {
            // SAFETY: socket(2) with constant arguments; the filter kills the process.
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) }
        });
        return;
    }
    if !is_root() {
        eprintln!("SKIP: not root: cannot create cgroups");
        return;
    }
    let cgroup = format!("runvm-confine-crash-test-{}", std::process::id());
    let output = run_child(name, &[("CGROUP", &cgroup)]);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGSYS),
        "{:?}",
        output.status
    );
    // The remover outlives the monitor briefly: give it a moment.
    let leftovers = || {
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(&cgroup))
            .filter(|p| p.exists())
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !leftovers().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(leftovers(), Vec::<std::path::PathBuf>::new());
}
