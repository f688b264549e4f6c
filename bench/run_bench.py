#!/usr/bin/python3
"""make bench / make bench-quick: every figure is a ratio to a baseline measured
in the same run, as a median over repeated runs. Absolute times on a shared
machine are noise; ratios are not.

Writes bench/results/bench.json, bench/results/report.md and PNG plots.

  run_bench.py [--quick] [--out DIR]
"""

import argparse
import concurrent.futures
import importlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from support import STATE, harness  # noqa: E402
import ganeti_compare  # noqa: E402

PROVIDER = os.path.join(ROOT, "providers", "gluster")
CONFIG = os.path.join(STATE, "bench.env")
MOUNT_BASE = os.path.join(STATE, "bench-mnt")
SHELL_MOUNT = os.path.join(STATE, "bench-shell-mnt")
MIB = 1 << 20


class Volume(typing.NamedTuple):
    """Where a section's disks live: the provider's configuration file for
    the volume, the images' directory on its mount, and a directory on the
    file system its bricks live on (for the brick fs file: the limit)."""
    config: str
    images: str
    brick_fs: str


GV0 = Volume(CONFIG, os.path.join(MOUNT_BASE, "gv0", "bench"), STATE)


# -- measuring ------------------------------------------------------------------

def timed(argv, env=None, check=True):
    """(seconds, wait4's ru_maxrss in KiB, stdout) of one command. That
    ru_maxrss is no peak of the command's: the child counts this process's
    memory until its exec (see peak_rss)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if check and process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {err.decode().strip()[-300:]}")
    return seconds, usage.ru_maxrss, out.decode()


def peak_rss(argv, env=None):
    """The command's own peak RSS in KiB: measured by /usr/bin/time, a small
    process, which a child's count before its exec does not inflate."""
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], env=env, capture_output=True, text=True,
                            check=True)
    return int(result.stderr.strip().splitlines()[-1])


def provider_env(extra=None, config=CONFIG):
    return {"PATH": "/usr/bin:/bin", "GLUSTER_CONFIG": config, **(extra or {})}


def provider(action, extra=None, check=True, volume=GV0):
    return timed([os.path.join(PROVIDER, action)], provider_env(extra, volume.config), check)


def shell(script):
    return timed(["/bin/sh", "-c", script])


def median_of(runs, measure):
    """Median seconds and the largest peak RSS over `runs` calls of measure()."""
    samples = [measure() for _ in range(runs)]
    return statistics.median(s[0] for s in samples), max(s[1] for s in samples)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


# -- setup ------------------------------------------------------------------------

def setup():
    harness("up")
    fd = os.open(CONFIG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"GLUSTER_SERVERS=127.0.0.1\nGLUSTER_VOLUME=gv0\nGLUSTER_MOUNT_BASE={MOUNT_BASE}\n"
                     "GLUSTER_DIR=bench\nGLUSTER_CALL_LOG=\n"
                     # a cold attach needs the volume unmounted by the detach before it
                     "GLUSTER_UNMOUNT_DELAY=0\n")


def new_name():
    return f"b-{uuid.uuid4().hex[:10]}.ext.disk0"


def image(name, volume=GV0):
    return os.path.join(volume.images, name)


def cleanup(names, volume=GV0):
    for name in names:
        provider("detach", {"VOL_NAME": name}, check=False, volume=volume)
        provider("remove", {"VOL_NAME": name}, check=False, volume=volume)


# -- 1. control path ------------------------------------------------------------------

# The interpreter floors: how the provider's scripts start (isolated,
# without the site module: its .pth files cost several ms) — the
# like-for-like floor — and Python with its usual start-up.
FLOORS = {"interpreter_floor_is": ["/usr/bin/python3", "-IS", "-c", "pass"],
          "interpreter_floor": ["/usr/bin/python3", "-c", "pass"]}


def taking_turns(runs, measures):
    """{key: (median seconds, largest peak RSS)}, the measures taking turns
    in each of `runs` rounds, so that a change in the machine's load falls on
    all of them alike."""
    samples = {key: [] for key in measures}
    for _ in range(runs):
        for key, measure in measures.items():
            samples[key].append(measure())
    return {key: (statistics.median(s[0] for s in found), max(s[1] for s in found))
            for key, found in samples.items()}


def control_path(runs):
    results = {}
    names = []
    os.makedirs(SHELL_MOUNT, exist_ok=True)
    floor = floor_site = None

    def record(op, ours, baseline=None, baseline_name=None):
        entry = {"seconds": ours[0], "vs_floor": ours[0] / floor, "vs_floor_site": ours[0] / floor_site}
        if baseline:
            entry.update(baseline=baseline_name, baseline_seconds=baseline[0],
                         vs_baseline=ours[0] / baseline[0])
        results[op] = entry

    # Provider operations, each on fresh disks so every run does the real work.
    def fresh(size=1024):
        name = new_name()
        names.append(name)
        provider("create", {"VOL_NAME": name, "VOL_SIZE": str(size)})
        return name

    provider("create", {"VOL_NAME": "warmup.ext.disk0", "VOL_SIZE": "8"})
    names.append("warmup.ext.disk0")
    provider("attach", {"VOL_NAME": "warmup.ext.disk0"})  # keeps the volume mounted

    # The warm attach and the two floors take turns: the target is their ratio.
    warm_name = fresh()
    provider("attach", {"VOL_NAME": warm_name})
    turns = taking_turns(runs, {"attach_warm": lambda: provider("attach", {"VOL_NAME": warm_name}),
                                **{key: lambda argv=argv: timed(argv) for key, argv in FLOORS.items()}})
    for key, argv in FLOORS.items():
        results[key] = {"seconds": turns[key][0], "peak_kib": peak_rss(argv), "command": " ".join(argv)}
    floor, floor_site = turns["interpreter_floor_is"][0], turns["interpreter_floor"][0]

    sample = []
    for _ in range(runs):
        name = new_name()
        names.append(name)
        sample.append(provider("create", {"VOL_NAME": name, "VOL_SIZE": "1024"}))
    shell_create = median_of(runs, lambda: shell(f"truncate -s 1G {image(new_name())}"))
    record("create", (statistics.median(s[0] for s in sample), max(s[1] for s in sample)),
           shell_create, "truncate -s 1G")

    shell_warm = median_of(runs, lambda: shell(f"losetup -j {image(warm_name)}"))
    record("attach_warm", turns["attach_warm"], shell_warm, "losetup -j FILE")
    results["attach_warm"]["peak_kib"] = peak_rss([os.path.join(PROVIDER, "attach")],
                                                  provider_env({"VOL_NAME": warm_name}))

    def cold_attach():
        name = fresh(64)
        provider("detach", {"VOL_NAME": "warmup.ext.disk0"})  # volume unmounted now
        provider("detach", {"VOL_NAME": warm_name})
        result = provider("attach", {"VOL_NAME": name})
        provider("detach", {"VOL_NAME": name})
        provider("attach", {"VOL_NAME": "warmup.ext.disk0"})
        return result

    def cold_shell():
        image_file = f"{SHELL_MOUNT}/bench/" + sorted(os.listdir(os.path.dirname(image(warm_name))))[0]
        result = shell(f"mount -t glusterfs 127.0.0.1:/gv0 {SHELL_MOUNT} && "
                       f"losetup --find --show --direct-io=on {image_file}")
        device = result[2].strip()
        subprocess.run(["losetup", "-d", device], check=True)
        subprocess.run(["umount", SHELL_MOUNT], check=True)
        return result

    provider("detach", {"VOL_NAME": warm_name})
    record("attach_cold", median_of(runs, cold_attach), median_of(runs, cold_shell),
           "mount -t glusterfs + losetup")
    provider("attach", {"VOL_NAME": "warmup.ext.disk0"})

    def detach():
        name = fresh(64)
        provider("attach", {"VOL_NAME": name})
        return provider("detach", {"VOL_NAME": name})

    def detach_shell():
        device = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", image(names[-1])],
                                capture_output=True, text=True, check=True).stdout.strip()
        return shell(f"losetup -d {device}")

    record("detach", median_of(runs, detach), median_of(runs, detach_shell), "losetup -d")

    def grow():
        name = fresh(64)
        device = provider("attach", {"VOL_NAME": name})[2].split("\n")[0]
        del device
        return provider("grow", {"VOL_NAME": name, "VOL_SIZE": "64", "VOL_NEW_SIZE": "128"})

    def grow_shell():
        name = fresh(64)
        device = provider("attach", {"VOL_NAME": name})[2].split("\n")[0]
        return shell(f"truncate -s 128M {image(name)} && losetup -c {device}")

    record("grow", median_of(runs, grow), median_of(runs, grow_shell), "truncate + losetup -c")

    def remove():
        return provider("remove", {"VOL_NAME": fresh(64)})

    def remove_shell():
        return shell(f"rm {image(fresh(64))}")

    record("remove", median_of(runs, remove), median_of(runs, remove_shell), "rm FILE")

    data_name = fresh(256)
    device = provider("attach", {"VOL_NAME": data_name})[2].split("\n")[0]
    subprocess.run(["dd", "if=/dev/urandom", f"of={device}", "bs=1M", "count=32", "oflag=direct",
                    "status=none"], check=True)

    def snapshot():
        target = new_name()
        names.append(target)
        return provider("snapshot", {"VOL_NAME": data_name, "VOL_SNAPSHOT_NAME": target})

    def snapshot_shell():
        target = image(new_name())
        result = shell(f"cp --sparse=always {image(data_name)} {target}")
        os.unlink(target)
        return result

    record("snapshot_256m", median_of(runs, snapshot), median_of(runs, snapshot_shell),
           "cp --sparse=always")
    record("setinfo", median_of(runs, lambda: provider(
        "setinfo", {"VOL_NAME": data_name, "VOL_METADATA": "originstname+bench.example.com"})),
        median_of(runs, lambda: shell(f"setfattr -n user.x -v y {image(data_name)}")),
        "setfattr")
    cleanup(names)
    return results


# -- 2. scale ------------------------------------------------------------------------------

def scale(counts, runs):
    results = {}
    provider("create", {"VOL_NAME": "scale-keep.ext.disk0", "VOL_SIZE": "8"})
    provider("attach", {"VOL_NAME": "scale-keep.ext.disk0"})
    directory = os.path.dirname(image("x"))
    filler = 0
    for count in counts:
        while filler < count:  # neighbours: sparse images made directly, fast
            with open(os.path.join(directory, f"filler-{filler:06d}.ext.disk0"), "wb") as handle:
                handle.truncate(MIB)
            filler += 1
        created = []

        def create():
            name = new_name()
            created.append(name)
            return provider("create", {"VOL_NAME": name, "VOL_SIZE": "64"})

        create_time = median_of(runs, create)
        provider("attach", {"VOL_NAME": created[0]})
        attach_time = median_of(runs, lambda: provider("attach", {"VOL_NAME": created[0]}))
        results[count] = {"create": create_time[0], "attach_warm": attach_time[0]}
        cleanup(created)
    for index in range(filler):
        os.unlink(os.path.join(directory, f"filler-{index:06d}.ext.disk0"))
    cleanup(["scale-keep.ext.disk0"])
    smallest, largest = min(counts), max(counts)
    for op in ("create", "attach_warm"):
        results[f"{op}_ratio_{largest}_vs_{smallest}"] = results[largest][op] / results[smallest][op]
    return results


def node_loops(others, runs):
    """Warm attach before and after `others` more loop devices are bound on
    the node (over small files of our own): a Ganeti node maps every disk of
    its instances, and an attach must find its own device among them."""
    name = new_name()
    provider("create", {"VOL_NAME": name, "VOL_SIZE": "8"})
    provider("attach", {"VOL_NAME": name})
    spare = tempfile.mkdtemp(prefix="bench-loops-")
    devices = []
    try:
        before = median_of(runs, lambda: provider("attach", {"VOL_NAME": name}))[0]
        for index in range(others):
            path = os.path.join(spare, str(index))
            with open(path, "wb") as handle:
                handle.truncate(MIB)
            devices.append(subprocess.run(["losetup", "--find", "--show", path], check=True,
                                          capture_output=True, text=True).stdout.strip())
        after = median_of(runs, lambda: provider("attach", {"VOL_NAME": name}))[0]
    finally:
        for device in devices:
            subprocess.run(["losetup", "--detach", device], check=False)
        shutil.rmtree(spare)
        cleanup([name])
    return {"others": others, "before_s": before, "after_s": after, "ratio": after / before}


# -- 3. concurrency ---------------------------------------------------------------------------

def concurrency(levels, per_level, rounds):
    """Cold attaches of distinct disks at each level of parallelism. The
    levels take turns `rounds` times and each level's median throughput
    counts: past 4 parallel the 2 cores are saturated, and a slow minute of
    the shared machine would otherwise decide which level looks slower."""
    provider("create", {"VOL_NAME": "conc-keep.ext.disk0", "VOL_SIZE": "8"})
    provider("attach", {"VOL_NAME": "conc-keep.ext.disk0"})
    throughputs = {level: [] for level in levels}
    latencies = {level: [] for level in levels}
    for _ in range(rounds):
        for level in levels:
            names = [new_name() for _ in range(max(level, per_level))]
            for name in names:
                provider("create", {"VOL_NAME": name, "VOL_SIZE": "16"})
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(max_workers=level) as pool:
                for seconds, _, _ in pool.map(lambda n: provider("attach", {"VOL_NAME": n}), names):
                    latencies[level].append(seconds)
            throughputs[level].append(len(names) / (time.perf_counter() - started))
            cleanup(names)
    cleanup(["conc-keep.ext.disk0"])
    results = {level: {"attaches": len(latencies[level]), "rounds": rounds,
                       "throughput_per_s": statistics.median(throughputs[level]),
                       "throughput_runs": throughputs[level],
                       "p50_s": percentile(latencies[level], 0.5), "p99_s": percentile(latencies[level], 0.99)}
               for level in levels}
    medians = [results[level]["throughput_per_s"] for level in levels]
    results["throughput_never_falls"] = all(b >= a * 0.95 for a, b in zip(medians, medians[1:]))
    return results


# -- 4. data path ----------------------------------------------------------------------------

FIO_PATTERNS = {
    "seq_write_1m": ["--rw=write", "--bs=1M", "--iodepth=1"],
    "seq_read_1m": ["--rw=read", "--bs=1M", "--iodepth=1"],
    "rand_read_4k_qd1": ["--rw=randread", "--bs=4k", "--iodepth=1"],
    "rand_write_4k_qd1": ["--rw=randwrite", "--bs=4k", "--iodepth=1"],
    "rand_read_4k_qd32": ["--rw=randread", "--bs=4k", "--iodepth=32"],
    "rand_write_4k_qd32": ["--rw=randwrite", "--bs=4k", "--iodepth=32"],
}


def zero_file(path, size_mib):
    """A file of size_mib MiB of written zeros (allocated, unlike a sparse one): fio's other target."""
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={size_mib}", "status=none"],
                   check=True, timeout=300)


def fio(target, pattern, size_mib, seconds):
    out = subprocess.run(["fio", "--name=bench", f"--filename={target}", "--direct=1",
                          "--ioengine=libaio", f"--size={size_mib}M", f"--runtime={seconds}",
                          "--time_based", "--output-format=json", *FIO_PATTERNS[pattern]],
                         capture_output=True, text=True, check=True).stdout
    job = json.loads(out[out.index("{"):])["jobs"][0]
    side = job["write"] if "write" in pattern else job["read"]
    return side["bw_bytes"] / MIB


def qemu_shape(pattern, block=None, depth=None):
    """(request size in bytes, depth) of the pattern, or those given."""
    args = FIO_PATTERNS[pattern]
    return block or (1 * MIB if "1M" in args[1] else 4096), depth or int(args[2].split("=")[1])


def qemu_run(uri, pattern, count, block=None, depth=None):
    """MiB/s of `count` requests of qemu-img bench on the gluster:// URI
    (QEMU's userspace driver), as qemu-img times them (its connect to the
    volume excluded); block (bytes) and depth, when given, instead of the
    pattern's. None if it failed."""
    size, depth = qemu_shape(pattern, block, depth)
    write = ["-w"] if "write" in pattern else []
    step = ["-S", str(size * 7)] if "rand" in pattern else []  # a stride, qemu-img bench has no random offsets
    out = subprocess.run(["qemu-img", "bench", "-f", "raw", "-t", "none", "-n", *write, "-c", str(count),
                          "-d", str(depth), "-s", str(size), *step, uri],
                         capture_output=True, text=True, timeout=600).stdout
    match = re.search(r"Run completed in ([0-9.]+) seconds", out)
    return (count * size / MIB) / float(match.group(1)) if match and float(match.group(1)) else None


def qemu_count(uri, pattern, seconds, block=None, depth=None):
    """How many requests qemu-img bench makes in about `seconds`: it runs a
    count of requests, not a time, so a short run finds the rate. None if
    that run failed."""
    size, depth_of = qemu_shape(pattern, block, depth)
    probe = max(64, 4 * depth_of)
    rate = qemu_run(uri, pattern, probe, block, depth)
    return min(max(probe, int(seconds * rate * MIB / size)), 1_000_000) if rate else None


def qemu_bench(uri, pattern, seconds, block=None, depth=None):
    """MiB/s of `seconds` of qemu-img bench on the gluster:// URI; block and
    depth as for qemu_run."""
    count = qemu_count(uri, pattern, seconds, block, depth)
    return qemu_run(uri, pattern, count, block, depth) if count else None


def data_path(size_mib, seconds, rounds, volume=GV0):
    """fio on each target; the FUSE file and the loop device, whose ratio is
    the target, take turns `rounds` times (the median counts), so that a
    change in the machine's speed during the run hits both."""
    results = {}
    local_dir = tempfile.mkdtemp(prefix="bench-local-", dir=volume.brick_fs)
    local = os.path.join(local_dir, "file")
    name = new_name()
    provider("create", {"VOL_NAME": name, "VOL_SIZE": str(size_mib), "EXTP_PREALLOCATION": "full"},
             volume=volume)
    lines = provider("attach", {"VOL_NAME": name}, volume=volume)[2].split("\n")
    device, uri = lines[0], lines[1][len("kvm:"):]
    fuse_file = image(name + ".fuse", volume)
    for path in (local, fuse_file):
        zero_file(path, size_mib)
    try:
        for pattern in FIO_PATTERNS:
            fuse, loop = [], []
            for _ in range(rounds):
                fuse.append(fio(fuse_file, pattern, size_mib, seconds))
                loop.append(fio(device, pattern, size_mib, seconds))
            row = {"brick_fs_file": fio(local, pattern, size_mib, seconds),
                   "fuse_file_odirect": statistics.median(fuse), "loop_device": statistics.median(loop)}
            row["qemu_gluster"] = qemu_bench(uri, pattern, seconds)
            row["loop_vs_fuse"] = row["loop_device"] / row["fuse_file_odirect"]
            results[pattern] = row
    finally:
        os.unlink(fuse_file)
        cleanup([name], volume)
        shutil.rmtree(local_dir, ignore_errors=True)
    return results


# -- 5. snapshot of a large, mostly empty disk ---------------------------------------------------

def snapshot_large(size_gib, data_mib, runs, volume=GV0):
    """Our snapshot against cp --sparse=always, taking turns, each after a
    sync so that neither pays for the other's dirty pages. Our snapshot
    fsyncs before it publishes the copy, so cp followed by sync of the copy
    is measured too: the same work with the same durability."""
    name = new_name()
    provider("create", {"VOL_NAME": name, "VOL_SIZE": str(size_gib * 1024)}, volume=volume)
    device = provider("attach", {"VOL_NAME": name}, volume=volume)[2].split("\n")[0]
    subprocess.run(["dd", "if=/dev/urandom", f"of={device}", "bs=4M", f"count={data_mib // 4}",
                    "oflag=direct", "status=none"], check=True)
    snaps = []
    seconds = {"provider": [], "cp": [], "cp_sync": []}

    def ours():
        snap = new_name()
        snaps.append(snap)
        result = provider("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": snap}, volume=volume)
        provider("remove", {"VOL_NAME": snap}, volume=volume)
        return result

    def cp(then=""):
        target = image(new_name(), volume)
        result = shell(f"cp --sparse=always {image(name, volume)} {target}{then.replace('TARGET', target)}")
        os.unlink(target)
        return result

    contenders = [("provider", ours), ("cp", cp), ("cp_sync", lambda: cp(" && sync TARGET"))]
    try:
        # Untimed: the first read after the writes looks up every shard of a
        # sharded disk (2 s against 0.7 s for 1 GiB on virt3), which would
        # hit whoever goes first.
        cp()
        for run in range(runs):
            for key, measure in contenders[run % 3:] + contenders[:run % 3]:  # who goes first rotates
                os.sync()
                seconds[key].append(measure()[0])
    finally:
        cleanup([name] + snaps, volume)
    mine, theirs, theirs_synced = (statistics.median(seconds[k]) for k in ("provider", "cp", "cp_sync"))
    return {"disk_gib": size_gib, "data_mib": data_mib, "provider_s": mine, "cp_sparse_s": theirs,
            "cp_sparse_sync_s": theirs_synced, "ratio": mine / theirs, "ratio_vs_synced": mine / theirs_synced}


# -- report --------------------------------------------------------------------------------------

DATA_PATH_TARGETS = ("brick_fs_file", "fuse_file_odirect", "loop_device", "qemu_gluster")


def pattern_bars(plt, rows, keys, title, path, log=False):
    """One group of bars per fio pattern (rows: pattern -> {key: MiB/s}), one bar per key."""
    patterns = list(rows)
    figure, axis = plt.subplots(figsize=(8, 4))
    for offset, key in enumerate(keys):
        axis.bar([i + offset * 0.2 for i in range(len(patterns))], [rows[p][key] or 0 for p in patterns],
                 width=0.2, label=key)
    axis.set_xticks([i + 0.3 for i in range(len(patterns))], patterns, rotation=30, ha="right")
    if log:
        axis.set_yscale("log")
    axis.set_ylabel("MiB/s (log)" if log else "MiB/s")
    axis.legend()
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path)


def plots(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if results.get("control_path"):
        control = {k: v for k, v in results["control_path"].items() if "vs_baseline" in v}
        figure, axis = plt.subplots(figsize=(8, 4))
        axis.bar(list(control), [v["vs_baseline"] for v in control.values()], color="#4a7ab5")
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_ylabel("provider time / hand-run shell time")
        axis.set_title("Control path vs the same work by hand (median)")
        plt.setp(axis.get_xticklabels(), rotation=30, ha="right")
        figure.tight_layout()
        figure.savefig(os.path.join(out, "control_path.png"))

    if results.get("concurrency"):
        levels = [k for k in results["concurrency"] if isinstance(k, int)]
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot(levels, [results["concurrency"][l]["throughput_per_s"] for l in levels], marker="o")
        axis.set_xscale("log", base=2)
        axis.set_xlabel("parallel attaches")
        axis.set_ylabel("attaches per second")
        axis.set_title("Concurrency: throughput")
        figure.tight_layout()
        figure.savefig(os.path.join(out, "concurrency.png"))

    if results.get("data_path"):
        pattern_bars(plt, results["data_path"], DATA_PATH_TARGETS, "Data path", os.path.join(out, "data_path.png"))

    if results.get("ganeti"):
        commands = list(results["ganeti"])
        figure, axis = plt.subplots(figsize=(6, 4))
        places = range(len(commands))
        axis.bar([i - 0.27 for i in places], [results["ganeti"][c]["ratio"] for c in commands], width=0.27,
                 color="#4a7ab5", label="this provider")
        axis.bar(list(places), [results["ganeti"][c].get("keep_mounted_ratio", 0) for c in commands],
                 width=0.27, color="#8fb08f", label="with keep_mounted")
        axis.bar([i + 0.27 for i in places], [results["ganeti"][c].get("null_ratio", 0) for c in commands],
                 width=0.27, color="#b0b0b0", label="do-nothing provider")
        axis.set_xticks(list(places), commands)
        axis.legend()
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.axhline(1.1, color="red", linewidth=0.8, linestyle="--")
        axis.set_ylabel("-t ext time / built-in -t gluster time")
        axis.set_title("gnt-instance commands: provider vs built-in template")
        figure.tight_layout()
        figure.savefig(os.path.join(out, "ganeti.png"))

    for module in ("replica3", "guest_fio"):
        importlib.import_module(module).plots(results, out, plt)


def report(results, out):
    """report.md from the sections results holds (--only without an earlier
    bench.json measures only those)."""
    c = results.get("control_path")
    lines = ["# Benchmark report", "",
             f"Run {results['when']} on {results['machine']}, {'quick' if results['quick'] else 'full'} "
             "mode. Every figure is a median over repeated runs and a ratio to a baseline measured in "
             "the same run." + "".join(f" Measured again on {again['when']}: {', '.join(again['sections'])}."
                                       for again in results.get("remeasured", [])), ""]
    if c:
        lines += ["## Control path", "",
                  "| operation | provider (ms) | vs `python3 -IS -c pass` | vs `python3 -c pass` | "
                  "baseline | vs baseline |",
                  "|---|---|---|---|---|---|"]
        for op, v in c.items():
            if op in FLOORS:
                continue
            lines.append(f"| {op} | {v['seconds'] * 1000:.1f} | {v['vs_floor']:.2f}x | {v['vs_floor_site']:.2f}x | "
                         f"{v.get('baseline', '-')} | {v.get('vs_baseline', 0):.2f}x |")
        floor, floor_site = c["interpreter_floor_is"]["seconds"], c["interpreter_floor"]["seconds"]
        lines += ["", "Interpreter floors, taking turns with the warm attach: `/usr/bin/python3 -IS -c pass` "
                      f"{floor * 1000:.1f} ms, `/usr/bin/python3 -c pass` {floor_site * 1000:.1f} ms. "
                      "The provider's scripts start with `-IS` (isolated, no site module), so the first "
                      "is the like-for-like floor; "
                      "the second, Python with its usual start-up, is shown for comparison.", "",
                  f"Targets: warm attach <= 2x the like-for-like floor (`python3 -IS -c pass`): "
                  f"**{c['attach_warm']['vs_floor']:.2f}x** ({c['attach_warm']['vs_floor_site']:.2f}x "
                  f"`python3 -c pass`); cold attach <= 1.3x shell: **{c['attach_cold']['vs_baseline']:.2f}x**.",
                  "", "Peak RSS, one run each under `/usr/bin/time`: warm attach "
                      f"{c['attach_warm']['peak_kib'] / 1024:.1f} MiB, `python3 -IS -c pass` "
                      f"{c['interpreter_floor_is']['peak_kib'] / 1024:.1f} MiB, `python3 -c pass` "
                      f"{c['interpreter_floor']['peak_kib'] / 1024:.1f} MiB. (Earlier reports gave wait4's "
                      "figure, which counts the benchmark's own memory until the command's exec.)",
                  "", "![control path](control_path.png)", ""]
    if "scale" in results:
        lines += ["## Scale", "", "| disks on the volume | create (ms) | warm attach (ms) |", "|---|---|---|"]
        for count, v in results["scale"].items():
            if isinstance(count, int):
                lines.append(f"| {count} | {v['create'] * 1000:.1f} | {v['attach_warm'] * 1000:.1f} |")
        ratio_keys = [k for k in results["scale"] if isinstance(k, str)]
        lines += [""] + [f"{k}: **{results['scale'][k]:.2f}x** (target <= 1.2x)" for k in ratio_keys]
    if "node_loops" in results:
        n = results["node_loops"]
        lines += ["", "## Loop devices on the node", "",
                  f"Warm attach with {n['others']} more loop devices bound on the node: "
                  f"{n['after_s'] * 1000:.1f} ms, against {n['before_s'] * 1000:.1f} ms before: "
                  f"**{n['ratio']:.2f}x** (held to the scale target, <= 1.2x). The device an attach "
                  "found last is noted in the disk's lock file and looked at first; without the note "
                  "every attach read every loop device's backing file (200 more made it 1.25x)."]
    if "concurrency" in results:
        lines += ["", "## Concurrency (distinct disks)", "",
                  "The levels take turns; attaches/s is the median of the rounds, each round's in brackets.", "",
                  "| parallel | attaches/s | p50 (ms) | p99 (ms) |", "|---|---|---|---|"]
        for level, v in results["concurrency"].items():
            if isinstance(level, int):
                runs = ", ".join(f"{t:.0f}" for t in v.get("throughput_runs", []))
                lines.append(f"| {level} | {v['throughput_per_s']:.1f} ({runs}) | {v['p50_s'] * 1000:.0f} | "
                             f"{v['p99_s'] * 1000:.0f} |")
        lines += ["", f"Throughput never falls as parallelism rises (5% tolerance): "
                      f"**{results['concurrency']['throughput_never_falls']}**", "",
                  "![concurrency](concurrency.png)", ""]
    if results.get("data_path"):
        lines += ["## Data path (fio, O_DIRECT; qemu-img bench for QEMU's gluster driver), MiB/s", "",
                  "| pattern | brick fs file | FUSE file | loop device | QEMU gluster:// | loop / FUSE |",
                  "|---|---|---|---|---|---|"]
        for pattern, v in results["data_path"].items():
            qemu = f"{v['qemu_gluster']:.0f}" if v["qemu_gluster"] else "-"
            lines.append(f"| {pattern} | {v['brick_fs_file']:.0f} | {v['fuse_file_odirect']:.0f} | "
                         f"{v['loop_device']:.0f} | {qemu} | {v['loop_vs_fuse']:.2f}x |")
        lines += ["", "Target: loop device >= 0.9x the FUSE file on every pattern. The FUSE file and the "
                  "loop device take turns, three runs each (medians); the others run once.", "",
                  "![data path](data_path.png)", ""]
    if "snapshot_large" in results:
        s = results["snapshot_large"]
        lines += ["## Snapshot of a large sparse disk", "",
                  f"{s['disk_gib']} GiB disk holding {s['data_mib']} MiB: provider {s['provider_s']:.2f} s, "
                  f"`cp --sparse=always` {s['cp_sparse_s']:.2f} s: **{s['ratio']:.2f}x** (target <= 1.0x). "
                  f"Our snapshot is on the bricks' disks when it appears (fsync before publishing); "
                  f"`cp --sparse=always` then `sync` of the copy, the same durability: "
                  f"{s['cp_sparse_sync_s']:.2f} s, **{s['ratio_vs_synced']:.2f}x**.", ""]
    if results.get("ganeti"):
        lines += ["## Side by side with Ganeti's built-in `gluster` template", "",
                  "A real Ganeti 3.0 cluster (the e2e harness, fake hypervisor), one instance with one "
                  "1 GiB disk per template, each on a single-brick volume of the same node; the "
                  "templates take turns. Medians of whole `gnt-instance` commands. The do-nothing "
                  "provider is `-t ext` with scripts that do nothing (`/bin/sh`, attach names a "
                  "ready loop device): Ganeti's own price for calling any provider. The keep_mounted "
                  "column is a second phase, this provider with `GLUSTER_KEEP_MOUNTED=yes` against "
                  "the built-in template again.", "",
                  "The job columns are Ganeti's own start and end times of each job "
                  "(`gnt-job list -o start_ts,end_ts`): the work without the client's start-up and "
                  "without the delay with which the client notices that a job ended, which varies "
                  "by tens of milliseconds from run to run. The cost per provider call is the job "
                  "time over the do-nothing provider's, divided by the calls.", "",
                  "| command | built-in `-t gluster` (s) | `-t ext` provider=gluster (s) | ratio | "
                  "job ratio | do-nothing provider: ratio / job ratio | ratio with keep_mounted | "
                  "provider calls | cost per call (ms) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for command, v in results["ganeti"].items():
            lines.append(f"| {command} | {v['builtin_s']:.2f} | {v['ext_s']:.2f} | **{v['ratio']:.2f}x** | "
                         f"{v['job_ratio']:.2f}x | {v['null_ratio']:.2f}x / {v['job_null_ratio']:.2f}x | "
                         f"{v.get('keep_mounted_ratio', 0):.2f}x | {v['provider_calls']:g} | "
                         f"{v['cost_per_call_s'] * 1000:.1f} |")
        lines += ["", "Target: no command slower than 1.1x the built-in template.", "",
                  "![ganeti](ganeti.png)", ""]
    for module in ("replica3", "guest_fio"):
        lines += importlib.import_module(module).report_lines(results)
    with open(os.path.join(out, "report.md"), "w") as handle:
        handle.write("\n".join(lines))


SECTIONS = ("control_path", "scale", "node_loops", "concurrency", "data_path", "snapshot_large", "ganeti",
            "replica3", "in_guest")
# Measured only when --only names them: a study of tunings, not a target.
ON_REQUEST = ("replica3_knobs",)
# Sections with GlusterFS hosts of their own (replica3.py), without the private GlusterFS.
OWN_HOSTS = ("replica3", "replica3_knobs", "in_guest")


def section_of(module, function, quick):
    # Imported when measured: replica3 and guest_fio build on this module.
    return getattr(importlib.import_module(module), function)(quick)


def previous_results(path):
    """An earlier bench.json, its numeric keys (disk counts, parallelism) as numbers again."""
    with open(path) as handle:
        results = json.load(handle)
    for section in ("scale", "concurrency"):
        if section in results:
            results[section] = {int(k) if k.isdigit() else k: v for k, v in results[section].items()}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few runs (CI smoke test)")
    parser.add_argument("--only", help="comma-separated sections to measure again, keeping the others "
                        f"from OUT/bench.json: {', '.join(SECTIONS + ON_REQUEST)}")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    wanted = args.only.split(",") if args.only else SECTIONS
    if set(wanted) - set(SECTIONS + ON_REQUEST):
        parser.error(f"unknown sections: {', '.join(sorted(set(wanted) - set(SECTIONS + ON_REQUEST)))}")
    quick = args.quick
    runs = 3 if quick else 15
    now = time.strftime("%Y-%m-%d %H:%M")
    # --only keeps the other sections of an earlier run in OUT; without one, it measures just these.
    previous = os.path.join(args.out, "bench.json")
    keep = bool(args.only) and os.path.exists(previous)
    results = previous_results(previous) if keep else {"when": now}
    if keep:
        earlier = results.get("remeasured", [])
        results["remeasured"] = ([earlier] if isinstance(earlier, dict) else earlier) + \
            [{"sections": wanted, "when": now}]
    results.update({"machine": f"{os.cpu_count()} cores, {os.uname().release}", "quick": quick})
    if set(wanted) - set(OWN_HOSTS):
        setup()
    measures = {
        "control_path": lambda: control_path(runs),
        "scale": lambda: scale([10, 100] if quick else [10, 1000, 10000], runs),
        "node_loops": lambda: node_loops(20 if quick else 200, runs),
        "concurrency": lambda: concurrency([1, 2, 4] if quick else [1, 2, 4, 8, 16, 32], 8 if quick else 64,
                                           1 if quick else 3),
        "data_path": lambda: None if quick else data_path(512, 5, 3),
        "snapshot_large": lambda: snapshot_large(1 if quick else 10, 64 if quick else 1024, 1 if quick else 5),
        "ganeti": lambda: ganeti_compare.compare(1 if quick else 15),
        "replica3": lambda: section_of("replica3", "replica3", quick),
        "replica3_knobs": lambda: section_of("replica3", "knobs", quick),
        "in_guest": lambda: section_of("guest_fio", "in_guest", quick),
    }
    for section in SECTIONS + ON_REQUEST:
        if section in wanted:
            print(f"bench: {section}", file=sys.stderr, flush=True)
            results[section] = measures[section]()
    with open(os.path.join(args.out, "bench.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)
    plots(results, args.out)
    report(results, args.out)
    print(open(os.path.join(args.out, "report.md")).read())
    return 0


if __name__ == "__main__":
    # replica3 and guest_fio import this module by name: its main runs as
    # that module, not as a second copy of it under __main__.
    import run_bench
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    sys.exit(run_bench.main())
