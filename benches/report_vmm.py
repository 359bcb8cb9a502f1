"""Turns the result lines of benches/nested-vmm.sh (vmm-result / vmm-extra, printed in L1)
into docs/perf-vmm.md and prints its tables. Run 0 of every VMM is a warm-up and left out."""
import platform
import statistics
import sys
import time

results, out, runs, l2_mib, l2_vcpus, l1_cpus, l1_wall, qemu_libs_kib, cmdline = sys.argv[1:]
LABELS = ["runvm", "qemu", "qemu-microvm"]
DESCRIBE = {
    "runvm": "runvm's monitor (`sandbox-vm` example `boot_linux`, release, static)",
    "qemu": "`qemu-system-x86_64 -M microvm` (Debian 7.2, full build)",
    "qemu-microvm": "`qemu-system-x86_64-microvm -M microvm` (Debian's microvm-only build)",
}


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)


samples = {}  # (label, run) -> merged fields
runvm_steps = ""  # boot_linux's build steps of the last runvm run
for line in open(results):
    if line.startswith("vmm-steps label=runvm "):
        runvm_steps = line.split(" ", 3)[3].strip()
    if line.startswith(("vmm-result ", "vmm-extra ")):
        f = fields(line)
        samples.setdefault((f["label"], f["run"]), {}).update(f)

rows = {}
failures = []
for label in LABELS:
    got = [s for (l, r), s in samples.items() if l == label and r != "0"]
    bad = [s for s in got if s.get("status") != "0" or float(s.get("init_ms", -1)) < 0
           or int(s.get("guest_kib", -1)) < 0]
    failures += [f"{label} run {s['run']}: status {s.get('status')}, init {s.get('init_ms')} ms" for s in bad]
    good = [s for s in got if s not in bad]
    if not good:
        continue

    def med(key, scale=1.0, g=good):
        return statistics.median(float(s[key]) * scale for s in g)

    rows[label] = {
        "n": len(good),
        "init": med("init_ms"),
        "init_min": min(float(s["init_ms"]) for s in good),
        "init_max": max(float(s["init_ms"]) for s in good),
        "uptime": med("uptime", 1000.0),
        "before_clock": statistics.median(float(s["init_ms"]) - 1000.0 * float(s["uptime"]) for s in good),
        "exit": med("exit_ms"),
        "hwm": med("hwm_kib"),
        "guest": med("guest_kib"),
        "own_peak": statistics.median(int(s["hwm_kib"]) - int(s["guest_kib"]) for s in good),
        "own_now": statistics.median(int(s["rss_kib"]) - int(s["guest_kib"]) for s in good),
        "cpus": {s.get("cpus") for s in good},
        "reported": [s.get("reported_guest_kib") for s in good],
        "vcpus_running": med("vcpus_running_ms") if label == "runvm" else None,
    }
    if label == "runvm" and all(float(s.get("own_mark_ms", -1)) >= 0 for s in good):
        # boot_linux's own clock starts at the VM build: split the time to /init into the
        # process start (exec, host probe), the VM build, the guest before its clock starts
        # (firmware-free PVH entry, early kernel) and the guest's uptime.
        rows[label]["split"] = {
            "exec_ms": statistics.median(float(s["init_ms"]) - float(s["own_mark_ms"]) for s in good),
            "build_ms": med("vcpus_running_ms"),
            "early_ms": statistics.median(float(s["own_mark_ms"]) - float(s["vcpus_running_ms"])
                                          - 1000.0 * float(s["uptime"]) for s in good),
            "uptime_ms": med("uptime", 1000.0),
        }


def mib(kib):
    return f"{kib / 1024:.1f}"


lines = [
    "# runvm's monitor vs QEMU microvm: booting Linux to /init",
    "",
    f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `benches/nested-vmm.sh {runs}` "
    f"on {platform.node()} ({platform.release()}). This host's own /dev/kvm cannot boot Linux (PVM, "
    "see tests/nested/run.sh), so every VMM ran inside the nested test host: an L1 Linux 6.12 under "
    f"QEMU TCG (`-cpu max`, SVM emulated, {l1_cpus} L1 CPU) with kvm-amd loaded, all in one L1 boot "
    f"({float(l1_wall):.0f} s wall). Each VMM booted the same L2 (Debian 6.12 cloud vmlinux by its PVH "
    f"entry + a busybox initramfs) {runs} times after one warm-up, {l2_mib} MiB and {l2_vcpus} vCPU, "
    "serial console, the VMMs taking turns. L1 runs under TCG, so absolute times are far above "
    "bare metal (every L2 exit goes through an emulated SVM); all VMMs ran under the same conditions, "
    "which is what the comparison needs. Load average of this 2-core host (shared with other work) when "
    f"the report was written: {' '.join(open('/proc/loadavg').read().split()[:3])}; single runs vary by "
    "up to 2x under that load (see min-max), medians less.",
    "",
    f"Guest command line (all VMMs): `{cmdline}`. QEMU: `-M microvm,x-option-roms=off -enable-kvm "
    f"-cpu host -m {l2_mib} -smp {l2_vcpus} -nodefaults -no-user-config -nographic -serial stdio "
    "-no-reboot -kernel vmlinux -initrd initrd.cpio -append ...` (firmware: qboot, Debian's "
    "bios-microvm.bin). The L2 /init prints a line first, and ends with ACPI power-off in every VMM.",
    "",
    "How it is measured (benches/vmm_stamp.rs, run in L1): **time to /init** is wall time from just "
    "before the fork+exec of the VMM to the moment the first line of the L2's /init (an ash builtin "
    "`echo`, no fork) reaches the VMM's stdout: it includes exec and dynamic loading, the VMM's setup, "
    "firmware, the kernel's boot and the initramfs unpack. The guest's own `/proc/uptime` at /init is "
    "shown apart (it starts late in the kernel's boot, so it cannot measure the monitor). **Memory**: "
    "when /init prints its last line (then it sleeps 1 s, so the VMM is still up), the reader takes "
    "VmHWM and VmRSS from /proc/PID/status and the resident size of the guest RAM mapping from "
    "/proc/PID/smaps (the one mapping at least half the guest's size). *Own memory* = VmHWM - guest "
    "RAM resident: the VMM's peak beyond the guest memory it touched (for runvm the guest RAM figure "
    "equals the `guest_resident_bytes` its outcome reports). Code pages of the VMM and its libraries "
    "count as its own.",
    "",
    f"## Medians of {runs} runs",
    "",
    "| VMM | time to /init ms (min-max) | guest uptime at /init ms | before the guest clock ms "
    "| to exit ms (incl. 1 s pause) | peak RSS MiB | guest RAM touched MiB | own memory MiB "
    "| own at /init (VmRSS - guest) MiB |",
    "|---|---|---|---|---|---|---|---|---|",
]
for label in LABELS:
    if label not in rows:
        lines.append(f"| {label} | failed | | | | | | | |")
        continue
    r = rows[label]
    lines.append(
        f"| {label} | {r['init']:.0f} ({r['init_min']:.0f}-{r['init_max']:.0f}) | {r['uptime']:.0f} "
        f"| {r['before_clock']:.0f} | {r['exit']:.0f} | {mib(r['hwm'])} | {mib(r['guest'])} "
        f"| {mib(r['own_peak'])} | {mib(r['own_now'])} |")
lines += ["", "VMMs: " + "; ".join(f"{k}: {v}" for k, v in DESCRIBE.items()) + ".",
          f"The full QEMU build needs {int(qemu_libs_kib) // 1024} MiB of binary and shared libraries "
          "in L1 (ldd); the microvm build far fewer; runvm's static executable needs nothing else."]

if "runvm" in rows and "qemu" in rows:
    a, q = rows["runvm"], rows["qemu"]
    checks = [
        ("time to /init <= 0.5x `qemu-system-x86_64 -M microvm`", a["init"] <= 0.5 * q["init"],
         f"{a['init'] / q['init']:.2f}x ({a['init']:.0f} vs {q['init']:.0f} ms)"),
        ("monitor's own memory beyond guest RAM touched <= 5 MiB", a["own_peak"] <= 5 * 1024,
         f"{mib(a['own_peak'])} MiB (QEMU: {mib(q['own_peak'])} MiB)"),
    ]
    if "qemu-microvm" in rows:
        m = rows["qemu-microvm"]
        checks.append(("(also) time to /init vs the microvm-only QEMU build", a["init"] <= 0.5 * m["init"],
                       f"{a['init'] / m['init']:.2f}x ({a['init']:.0f} vs {m['init']:.0f} ms)"))
    lines += ["", "## Targets (monitor issue)", "", "| target | met | measured |", "|---|---|---|"]
    lines += [f"| {n} | {'yes' if ok else 'no'} | {v} |" for n, ok, v in checks]
    if "split" in a:
        p = a["split"]
        lines += ["", "Where runvm's time to /init goes (medians; boot_linux's own clock, `--mark`, starts "
                  "at the VM build):", "",
                  "| part | ms |", "|---|---|",
                  f"| fork+exec of the static monitor, host probe, argument parsing | {p['exec_ms']:.0f} |",
                  f"| VM build: KVM VM, guest RAM, kernel + initramfs load, devices, vCPUs | {p['build_ms']:.0f} |",
                  f"| guest before its clock starts (PVH entry, early kernel setup) | {p['early_ms']:.0f} |",
                  f"| guest kernel boot to /init by its own uptime | {p['uptime_ms']:.0f} |"]
        if runvm_steps:
            lines += ["", f"Steps of the last runvm run (ms since the VM build started): {runvm_steps}."]
if "runvm" in rows and "qemu" in rows:
    a, q = rows["runvm"], rows["qemu"]
    lines += ["", "## Reading the numbers", "",
              f"- The guest RAM touched is the same in every VMM ({mib(a['guest'])} MiB): the kernel's "
              "loaded segments (48.7 MiB for this vmlinux), the initramfs and what the guest itself "
              "touched by /init.",
              f"- QEMU's own {mib(q['own_peak'])} MiB: QEMU maps the vmlinux file privately and keeps it "
              "resident after loading (its copy for restoring the ROM blobs at reset; seen on this host "
              "with `qemu-system-x86_64-microvm ... -S`: a 49,920 KiB resident mapping of vmlinux), plus "
              "its executable, its shared libraries and heap. runvm's monitor reads the kernel segments "
              "and the initramfs straight into guest RAM (the file is read, not mapped) and keeps no copy.",
              f"- The same kernel reaches /init after {a['uptime']:.0f} ms of its own uptime under runvm "
              f"and {q['uptime']:.0f} ms under QEMU: the machines differ (the devices, ACPI tables and "
              "CPUID each monitor offers; QEMU's microvm adds e.g. virtio-mmio transports and its own "
              "legacy devices), so the ratio measures each monitor together with the machine it presents to the "
              "guest, which is what a user of either gets. Which difference costs the guest most was "
              "not investigated.",
              "- L1's clock advanced in 4 ms steps in these runs (times are multiples of 4 ms): "
              "irrelevant at these magnitudes."]
if failures:
    lines += ["", "Failed runs (left out): " + "; ".join(failures)]
lines.append("")
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
