"""Turns the raw benchmark files of benches/run.sh into docs/perf.md."""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

work, out, runs, concurrency, *names = sys.argv[1:]


def load(name, what):
    return json.load(open(os.path.join(work, f"{name}-{what}.json")))["results"][0]


def ms(seconds):
    return f"{seconds * 1000:.1f}"


def version(name):
    cmd = {"runvm": ["target/x86_64-unknown-linux-gnu/release/runvm", "--version"]}.get(name, [name, "--version"])
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except Exception:
        return "?"


rows = {}
for n in names:
    run = load(n, "run")
    rows[n] = {
        "run_median": statistics.median(run["times"]),
        "run_cpu": run["user"] + run["system"],
        "create": statistics.median(load(n, "create")["times"]),
        "start": statistics.median(load(n, "start")["times"]),
        "delete": statistics.median(load(n, "delete")["times"]),
        "exec": statistics.median(load(n, "exec")["times"]),
        "rss": {c: int(statistics.median(int(v) for v in open(os.path.join(work, f"{n}-rss-{c}")).read().split()))
                for c in ["run", "create", "state", "delete"]},
        "conc": json.load(open(os.path.join(work, f"{n}-conc"))),
    }

lines = [
    "# runvm performance",
    "",
    f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `benches/run.sh {runs} {concurrency}` "
    f"on {platform.node()}: {os.cpu_count()} CPUs, Linux {platform.release()}. "
    "Every runtime ran the same busybox bundle (`/bin/true`, runvm's default seccomp profile) in the same run; "
    "crun ran with the unified cgroup.controllers hidden (it refuses this hybrid layout otherwise).",
    "",
    "Versions: " + "; ".join(f"{n}: {version(n)}" for n in names) + ".",
    "",
    f"Load average when the report was written: {open('/proc/loadavg').read().split()[0]} "
    "(other work on this 2-core machine adds noise to every runtime alike; compare within a run).",
    "",
    f"## `run` of /bin/true ({runs} runs)",
    "",
    "| runtime | median wall ms | mean CPU ms (user+sys) | peak RSS KiB |",
    "|---|---|---|---|",
]
for n in names:
    r = rows[n]
    lines.append(f"| {n} | {ms(r['run_median'])} | {ms(r['run_cpu'])} | {r['rss']['run']} |")
lines += ["", "Ratios of runvm to each peer (below 1 means runvm is faster or smaller):", "",
          "| peer | wall | CPU | peak RSS |", "|---|---|---|---|"]
for n in names[1:]:
    a, b = rows["runvm"], rows[n]
    lines.append(f"| {n} | {a['run_median'] / b['run_median']:.2f} | {a['run_cpu'] / b['run_cpu']:.2f} | "
                 f"{a['rss']['run'] / b['rss']['run']:.2f} |")
lines += ["", "## Lifecycle steps (median wall ms)", "",
          "| runtime | create | start | delete | exec of /bin/true into a running container |",
          "|---|---|---|---|---|"]
for n in names:
    r = rows[n]
    lines.append(f"| {n} | {ms(r['create'])} | {ms(r['start'])} | {ms(r['delete'])} | {ms(r['exec'])} |")
lines += ["", "## Peak RSS of each command (KiB, GNU time, median of 5)", "", "| runtime | run | create | state | delete |",
          "|---|---|---|---|---|"]
for n in names:
    r = rows[n]["rss"]
    lines.append(f"| {n} | {r['run']} | {r['create']} | {r['state']} | {r['delete']} |")
lines += ["", f"## {concurrency} containers run concurrently", "",
          "| runtime | total s | peak host memory MiB | failures | leftovers |", "|---|---|---|---|---|"]
for n in names:
    c = rows[n]["conc"]
    lines.append(f"| {n} | {c['seconds']:.2f} | {c['peak_kib'] / 1024:.0f} | {c['failures']} | {c['leftovers']} |")
if "crun" in rows:
    a, c = rows["runvm"], rows["crun"]
    checks = [
        ("`run` median wall <= 0.8x crun", a["run_median"] <= 0.8 * c["run_median"],
         f"{a['run_median'] / c['run_median']:.2f}x"),
        ("`run` CPU <= 0.8x crun", a["run_cpu"] <= 0.8 * c["run_cpu"], f"{a['run_cpu'] / c['run_cpu']:.2f}x"),
        ("`run` peak RSS <= crun", a["rss"]["run"] <= c["rss"]["run"], f"{a['rss']['run']} vs {c['rss']['run']} KiB"),
        (f"{concurrency} concurrent runs faster than crun, no failure, no leftover",
         a["conc"]["seconds"] < c["conc"]["seconds"] and a["conc"]["failures"] == 0 and a["conc"]["leftovers"] == 0,
         f"{a['conc']['seconds']:.2f} s vs {c['conc']['seconds']:.2f} s"),
    ]
    lines += ["", "## Targets (issue: faster than crun, leaner than every peer)", "",
              "| target | met | measured |", "|---|---|---|"]
    for name, ok, value in checks:
        lines.append(f"| {name} | {'yes' if ok else 'no'} | {value} |")
    lines += ["",
              "Where runvm's memory goes: `runvm state` (parse arguments, read one small file) peaks at "
              f"{a['rss']['state']} KiB; that floor is the static executable's touched pages (clap, serde, "
              "the seccomp compiler and libc, built with opt-level \"s\"). `run` adds parsing config.json, "
              "compiling the seccomp profile and the clone of init. Peak RSS is the median of five GNU "
              "time samples per command; single samples move by about 100 KiB. runvm re-executes through a read-only "
              "bind of its own binary (CVE-2019-5736), so no copy of the binary is made."]

monitor = open(os.path.join(work, "monitor.txt")).read().strip()
lines += ["", "## runvm's monitor: tiny guests on this host's /dev/kvm", "",
          "Output of `cargo run --release -p runvm-sandbox-vm --example boot_time`: time from VM "
          "creation to the guest's first serial byte and to its exit, and the monitor's own memory. "
          "On this host KVM emulates every guest instruction (PVM), so these are tiny guests; Linux "
          "boot timings come from the nested test host (`tests/nested/run.sh`).", "", "```", monitor, "```", "",
          "## runvm's monitor vs QEMU microvm booting Linux", "",
          "Time to the guest's /init and the monitor's own memory, runvm's monitor and "
          "`qemu-system-x86_64 -M microvm` booting the same kernel and initramfs in the nested test host: "
          "[perf-vmm.md](perf-vmm.md), written by `benches/nested-vmm.sh` (a run of its own: it boots an L1 "
          "under QEMU TCG and takes minutes).", ""]
open(out, "w").write("\n".join(lines))
