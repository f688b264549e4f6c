"""Bench sections on a production-shaped volume: replica3 and replica3_knobs.

tests/harness/gluster_hosts.py production brings up three GlusterFS hosts in
network namespaces of their own, serving virt3: replica 3, group virt (64 MB
shards, strict-o-direct, client and server quorum). These are the
benchmarks' own hosts (gbhost1-3 at 10.77.0.11-13 on bridge gbbr0), so they
run beside the e2e's (gfhost1-3). The provider mounts virt3 with all three as
its servers, as a production node does.

replica3: run_bench's data path (brick fs file, FUSE file with O_DIRECT, the
loop device of the provider's attach, QEMU's gluster driver) and its snapshot
of a large sparse disk, on virt3, with the targets in TARGETS.

replica3_knobs (on request: --only replica3_knobs): each tuning of the kernel
path in KNOBS, a node setting of the provider, alone and together, as a ratio
to the defaults measured in the same run, the variants taking turns.
"""

import contextlib
import os
import shutil
import statistics
import subprocess

import run_bench  # which imports this module only once it is whole, when a section needs it

HOSTS = os.path.join(run_bench.ROOT, "tests", "harness", "gluster_hosts.py")
HOSTS_DIR = "/tmp/ganeti-bench-hosts"
# The benchmarks' set of hosts: names, directory and subnet of their own.
HOSTS_ENV = {"GLUSTER_HOSTS_PREFIX": "gb", "GLUSTER_HOSTS_DIR": HOSTS_DIR, "GLUSTER_HOSTS_SUBNET": "10.77.0"}
SERVERS = "10.77.0.11,10.77.0.12,10.77.0.13"
# The provider's configuration and mount base: outside HOSTS_DIR, which `down` deletes.
STATE = "/tmp/ganeti-bench-replica3"
MOUNT_BASE = os.path.join(STATE, "mnt")
VIRT3 = run_bench.Volume(os.path.join(STATE, "bench.env"), os.path.join(MOUNT_BASE, "virt3", "bench"),
                         HOSTS_DIR)  # the bricks are directories under HOSTS_DIR
SECTIONS = ("replica3", "replica3_knobs")  # they bring their own hosts up (no private GlusterFS)
COMMAND_TIMEOUT = 300

# (what, pattern, the other target (key in the data path's row), lowest ratio loop / other)
TARGETS = [
    ("loop >= 0.8x QEMU gluster://, seq 1 MiB write", "seq_write_1m", "qemu_gluster", 0.8),
    ("loop >= 0.8x QEMU gluster://, seq 1 MiB read", "seq_read_1m", "qemu_gluster", 0.8),
    ("loop >= 0.9x QEMU gluster://, 4k random read qd32", "rand_read_4k_qd32", "qemu_gluster", 0.9),
    ("loop >= 0.9x QEMU gluster://, 4k random write qd32", "rand_write_4k_qd32", "qemu_gluster", 0.9),
] + [(f"loop >= 0.95x FUSE file, {pattern}", pattern, "fuse_file_odirect", 0.95)
     for pattern in run_bench.FIO_PATTERNS]

# Tunings of the kernel path, each a node setting of the provider (given to
# attach in its environment). Only those that cannot acknowledge a write
# before the bricks have it: no write-behind, no kernel writeback cache.
CANDIDATES = {
    "fuse_reader_threads=2": {"GLUSTER_FUSE_READER_THREADS": "2"},
    "client_event_threads=2": {"GLUSTER_CLIENT_EVENT_THREADS": "2"},
    "client_io_threads=4": {"GLUSTER_CLIENT_IO_THREADS": "4"},
    "loop scheduler=mq-deadline": {"GLUSTER_LOOP_QUEUE": "scheduler=mq-deadline"},
}
# Measured, but no default: a 4096-byte sector changes the disk's geometry
# (a guest's partition table is in 512-byte sectors), and longer FUSE
# timeouts let a node act on another node's stale view of a disk.
OTHERS = {
    "loop_sector_size=4096": {"GLUSTER_LOOP_SECTOR_SIZE": "4096"},
    "fuse timeouts 10 s": {"GLUSTER_FUSE_ATTRIBUTE_TIMEOUT": "10", "GLUSTER_FUSE_ENTRY_TIMEOUT": "10",
                           "GLUSTER_FUSE_NEGATIVE_TIMEOUT": "10"},
}
KNOBS = {"defaults": {}, **CANDIDATES, **OTHERS,
         "candidates together": {k: v for env in CANDIDATES.values() for k, v in env.items()}}


# -- the hosts --------------------------------------------------------------------------------

def _hosts(*args):
    subprocess.run(["/usr/bin/python3", HOSTS, *args], env={**os.environ, **HOSTS_ENV}, check=True,
                   timeout=COMMAND_TIMEOUT)


def _mounted():
    """Mount points under MOUNT_BASE (mountinfo's 5th field; no octal escapes in ours)."""
    with open("/proc/self/mountinfo") as handle:
        return [line.split()[4] for line in handle if line.split()[4].startswith(MOUNT_BASE + "/")]


def _release_leftovers():
    """What a failed section left: loop devices over images on our mount, the mount itself."""
    listing = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                             capture_output=True, text=True, timeout=30).stdout
    for line in listing.splitlines():
        device, _, backing = line.partition(" ")
        if backing.strip().startswith(MOUNT_BASE + "/"):
            subprocess.run(["losetup", "--detach", device], timeout=30, check=False)
    for point in _mounted():
        if subprocess.run(["umount", point], timeout=30, check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", point], timeout=30, check=False)


@contextlib.contextmanager
def hosts():
    """The three hosts and the provider's configuration for virt3, all gone
    again afterwards, also when the section fails."""
    try:
        _hosts("production")
        os.makedirs(STATE, mode=0o700, exist_ok=True)
        fd = os.open(VIRT3.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"GLUSTER_SERVERS={SERVERS}\nGLUSTER_VOLUME=virt3\nGLUSTER_MOUNT_BASE={MOUNT_BASE}\n"
                         "GLUSTER_DIR=bench\nGLUSTER_CALL_LOG=\n"
                         # each knob's variant needs a client of its own: unmount at the last detach
                         "GLUSTER_UNMOUNT_DELAY=0\n")
        yield
    finally:
        _release_leftovers()
        _hosts("down")
        if not _mounted():  # never delete through a mount
            shutil.rmtree(STATE, ignore_errors=True)


# -- replica3 ---------------------------------------------------------------------------------

def replica3(quick):
    with hosts():
        data = run_bench.data_path(64 if quick else 512, 1 if quick else 5, 1 if quick else 3, VIRT3)
        snapshot = run_bench.snapshot_large(1 if quick else 10, 64 if quick else 1024, 1 if quick else 3, VIRT3)
    return {"data_path": data, "snapshot_large": snapshot, "targets": targets(data, snapshot)}


def targets(data, snapshot):
    """[what, ratio, limit, met] of every target."""
    found = []
    for what, pattern, other, limit in TARGETS:
        row = data[pattern]
        ratio = row["loop_device"] / row[other] if row[other] else None
        found.append([what, ratio, limit, ratio is not None and ratio >= limit])
    ratio = snapshot["ratio_vs_synced"]
    found.append(["snapshot <= 1.0x cp --sparse=always + sync", ratio, 1.0, ratio <= 1.0])
    return found


# -- replica3_knobs ---------------------------------------------------------------------------

def knobs(quick):
    size_mib, seconds, rounds = (64, 1, 1) if quick else (512, 2, 3)
    samples = {v: {p: {"fuse": [], "loop": []} for p in run_bench.FIO_PATTERNS} for v in KNOBS}
    applied = {}
    name = run_bench.new_name()
    fuse_file = run_bench.image(name + ".fuse", VIRT3)
    with hosts():
        run_bench.provider("create", {"VOL_NAME": name, "VOL_SIZE": str(size_mib), "EXTP_PREALLOCATION": "full"},
                           volume=VIRT3)
        for round_ in range(rounds):
            for variant, env in KNOBS.items():
                device = run_bench.provider("attach", {"VOL_NAME": name, **env}, volume=VIRT3)[2].split("\n")[0]
                applied[variant] = _applied(device)
                if not os.path.exists(fuse_file):
                    run_bench.zero_file(fuse_file, size_mib)
                # Who goes first alternates: the first I/O after a mount looks up the shards.
                targets = [("fuse", fuse_file), ("loop", device)][::1 if round_ % 2 == 0 else -1]
                for pattern in run_bench.FIO_PATTERNS:
                    for key, target in targets:
                        samples[variant][pattern][key].append(run_bench.fio(target, pattern, size_mib, seconds))
                run_bench.provider("detach", {"VOL_NAME": name}, volume=VIRT3)
                if _mounted():  # the next variant must get a client of its own
                    raise RuntimeError(f"virt3 still mounted after the detach of variant {variant}")
        # The FUSE file is removed through a mount: the provider's, made by an attach.
        run_bench.provider("attach", {"VOL_NAME": name}, volume=VIRT3)
        os.unlink(fuse_file)
        run_bench.cleanup([name], VIRT3)
    results = {"size_mib": size_mib, "seconds": seconds, "rounds": rounds, "variants": {}}
    for variant in KNOBS:
        rows = {}
        for pattern, found in samples[variant].items():
            fuse, loop = statistics.median(found["fuse"]), statistics.median(found["loop"])
            base = samples["defaults"][pattern]
            rows[pattern] = {"fuse_mib_s": fuse, "loop_mib_s": loop, "loop_vs_fuse": loop / fuse,
                             "fuse_vs_defaults": fuse / statistics.median(base["fuse"]),
                             "loop_vs_defaults": loop / statistics.median(base["loop"])}
        results["variants"][variant] = {"settings": KNOBS[variant], "applied": applied[variant], "patterns": rows}
    return results


def _applied(device):
    """What the variant really got: the glusterfs client's tuning options
    and the loop device's queue, as the kernel shows them."""
    point = os.path.join(MOUNT_BASE, "virt3")
    client = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")
        except OSError:
            continue
        if argv[0].endswith("glusterfs") and point in argv:
            client = [a for a in argv if a.startswith(("--reader", "--attribute", "--entry", "--negative",
                                                       "--xlator-option"))]
    queue = f"/sys/block/{os.path.basename(device)}/queue"
    return {"client": client, **{attribute: open(f"{queue}/{attribute}").read().strip()
                                 for attribute in ("scheduler", "logical_block_size", "nr_requests")}}


# -- report -----------------------------------------------------------------------------------

def report_lines(results):
    lines = []
    r3 = results.get("replica3")
    if r3:
        one_brick = results.get("data_path") or {}
        lines += ["## Replica 3 (virt3: three GlusterFS hosts in network namespaces, group virt), MiB/s", "",
                  "fio with O_DIRECT; qemu-img bench for QEMU's gluster driver on the URI of attach's second "
                  "line. The provider mounts virt3 with all three hosts as servers. The FUSE file and the "
                  "loop device take turns (medians); the others run once. The one-brick columns are the "
                  "data path section's (gv0, a single brick on this machine), when it ran.", "",
                  "| pattern | brick fs file | FUSE file | loop device | QEMU gluster:// | loop / FUSE | "
                  "loop / QEMU | one brick: loop | one brick: loop / FUSE |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for pattern, v in r3["data_path"].items():
            qemu, single = v["qemu_gluster"], one_brick.get(pattern)
            cells = [pattern, f"{v['brick_fs_file']:.0f}", f"{v['fuse_file_odirect']:.0f}",
                     f"{v['loop_device']:.0f}", f"{qemu:.0f}" if qemu else "-", f"{v['loop_vs_fuse']:.2f}x",
                     f"{v['loop_device'] / qemu:.2f}x" if qemu else "-",
                     f"{single['loop_device']:.0f}" if single else "-",
                     f"{single['loop_vs_fuse']:.2f}x" if single else "-"]
            lines.append("| " + " | ".join(cells) + " |")
        s = r3["snapshot_large"]
        lines += ["", f"Snapshot of a {s['disk_gib']} GiB sharded disk holding {s['data_mib']} MiB: provider "
                      f"{s['provider_s']:.2f} s, `cp --sparse=always` {s['cp_sparse_s']:.2f} s "
                      f"({s['ratio']:.2f}x), `cp --sparse=always` + `sync` {s['cp_sparse_sync_s']:.2f} s "
                      f"({s['ratio_vs_synced']:.2f}x).", "",
                  "| target | ratio | met |", "|---|---|---|"]
        for what, ratio, limit, met in r3["targets"]:
            lines.append(f"| {what} | {f'{ratio:.2f}x' if ratio is not None else '-'} | "
                         f"{'**yes**' if met else 'no'} |")
        lines += ["", "![replica 3](replica3.png)", ""]
    k = results.get("replica3_knobs")
    if k:
        patterns = list(run_bench.FIO_PATTERNS)
        lines += ["## Kernel-path tuning on virt3: each knob against the defaults", "",
                  f"Each variant is a node setting given to attach; each gets a glusterfs client of its own "
                  f"(mounted by that attach). The variants take turns, {k['rounds']} rounds of fio "
                  f"({k['size_mib']} MiB, {k['seconds']} s per run; medians), the FUSE file and the loop "
                  "device of the same mount one after the other. Figures are MiB/s over the defaults' in the "
                  "same run.", ""]
        for target in ("loop", "fuse"):
            lines += [f"{'Loop device' if target == 'loop' else 'FUSE file (O_DIRECT)'}:", "",
                      "| variant | " + " | ".join(patterns) + " |", "|---|" + "---|" * len(patterns)]
            for variant, v in k["variants"].items():
                lines.append(f"| {variant} | " + " | ".join(
                    f"{v['patterns'][p][target + '_vs_defaults']:.2f}x" for p in patterns) + " |")
            lines.append("")
        defaults = k["variants"]["defaults"]["patterns"]
        lines += ["Defaults, MiB/s (loop / FUSE): " + ", ".join(
            f"{p} {defaults[p]['loop_mib_s']:.0f} / {defaults[p]['fuse_mib_s']:.0f}" for p in patterns) + ".",
                  "", "![knobs](replica3_knobs.png)", ""]
    return lines


def plots(results, out, plt):
    r3 = results.get("replica3")
    if r3:
        run_bench.pattern_bars(plt, r3["data_path"], run_bench.DATA_PATH_TARGETS,
                               "Data path on virt3 (replica 3, group virt)", os.path.join(out, "replica3.png"), log=True)
    k = results.get("replica3_knobs")
    if k:
        variants, patterns = list(k["variants"]), list(run_bench.FIO_PATTERNS)
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        for axis, target in zip(axes, ("loop", "fuse")):
            grid = [[k["variants"][v]["patterns"][p][target + "_vs_defaults"] for p in patterns] for v in variants]
            image = axis.imshow(grid, cmap="RdYlGn", vmin=0.7, vmax=1.3, aspect="auto")
            for y, row in enumerate(grid):
                for x, value in enumerate(row):
                    axis.text(x, y, f"{value:.2f}", ha="center", va="center", fontsize=7)
            axis.set_xticks(range(len(patterns)), patterns, rotation=30, ha="right")
            axis.set_yticks(range(len(variants)), variants)
            axis.set_title(f"{'loop device' if target == 'loop' else 'FUSE file'}: MiB/s / defaults'")
        figure.colorbar(image, ax=axes)
        figure.savefig(os.path.join(out, "replica3_knobs.png"), bbox_inches="tight")
