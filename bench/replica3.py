"""Bench sections on a production-shaped volume: replica3 and replica3_knobs.

tests/harness/gluster_hosts.py production brings up three GlusterFS hosts in
network namespaces of their own, serving virt3: replica 3, group virt (64 MB
shards, strict-o-direct, client and server quorum). These are the
benchmarks' own hosts (gbhost1-3 at 10.77.0.11-13 on bridge gbbr0), so they
run beside the e2e's (gfhost1-3). The provider mounts virt3 with all three as
its servers, as a production node does.

replica3: run_bench's data path (brick fs file, FUSE file with O_DIRECT, the
loop device of the provider's attach, QEMU's gluster driver) and its snapshot
of a large sparse disk, on virt3, with the targets in TARGETS; and a profile
(profile) of sequential writes and of 4 KiB requests: what the bricks
receive, and the CPU time it costs, through FUSE and through QEMU's driver.

replica3_knobs (on request: --only replica3_knobs): each tuning of the kernel
path in KNOBS, a node setting of the provider, alone and together, as a ratio
to the defaults measured in the same run, the variants taking turns.
"""

import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import xml.etree.ElementTree as ElementTree

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
    "loop scheduler=none": {"GLUSTER_LOOP_QUEUE": "scheduler=none"},  # the kernel gives loop mq-deadline
}
# Measured, but no default: a 4096-byte sector changes the disk's geometry
# (a guest's partition table is in 512-byte sectors), and longer FUSE
# timeouts let a node act on another node's stale view of a disk.
OTHERS = {
    "loop_sector_size=4096": {"GLUSTER_LOOP_SECTOR_SIZE": "4096"},
    "fuse timeouts 10 s": {"GLUSTER_FUSE_ATTRIBUTE_TIMEOUT": "10", "GLUSTER_FUSE_ENTRY_TIMEOUT": "10",
                           "GLUSTER_FUSE_NEGATIVE_TIMEOUT": "10"},
}
# "defaults again" is the defaults once more: how far a variant moves by
# chance alone, on this machine, in this run.
KNOBS = {"defaults": {}, "defaults again": {}, **CANDIDATES, **OTHERS,
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
        found = profile(64 if quick else 512, 1 if quick else 5)
    return {"data_path": data, "snapshot_large": snapshot, "targets": targets(data, snapshot),
            "write_profile": found["writes"], "request_profile": found["requests"]}


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


# -- replica3: where the time goes -------------------------------------------------------------

def _cli(*args):
    return subprocess.run(["/usr/bin/python3", HOSTS, "cli", "1", *args], env={**os.environ, **HOSTS_ENV},
                          capture_output=True, text=True, check=True, timeout=COMMAND_TIMEOUT).stdout


def processes():
    """(pid, argv) of every process."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            yield int(pid), open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")
        except OSError:
            continue


def cpu_seconds(pid):
    """The process's CPU time so far (user + system); None once it is gone
    or a zombie."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(match):
    """CPU time (user + system) of the processes whose argv match."""
    return sum(cpu_seconds(pid) or 0 for pid, argv in processes() if match(argv))


def machine_busy():
    """(busy, all) CPU time of the machine so far, /proc/stat's first line, in
    seconds summed over its CPUs: busy is all but idle and iowait."""
    ticks = [int(f) for f in open("/proc/stat").readline().split()[1:8]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz


def _children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _bricks(argv):
    return argv[0].endswith("glusterfsd") and any(a.startswith(HOSTS_DIR + "/") for a in argv)


def _fuse_client(argv):
    return argv[0].endswith("glusterfs") and os.path.join(MOUNT_BASE, "virt3") in argv


def _brick_stats(xml):
    """From `volume profile info --xml`, the bricks' cumulative stats: the
    first brick's {write size in bytes: count} and bytes written (each
    replica gets every write), the bytes all bricks read (a read goes to one
    of them), and {fop: [calls, their summed latency in ns]} over all
    bricks."""
    bricks = ElementTree.fromstring(xml).findall(".//brick/cumulativeStats")
    fops = {}
    for stats in bricks:
        for fop in stats.iter("fop"):
            hits = int(fop.findtext("hits"))
            calls, latency = fops.setdefault(fop.findtext("name"), [0, 0.0])
            fops[fop.findtext("name")] = [calls + hits, latency + hits * float(fop.findtext("avgLatency"))]
    return {"write_sizes": {int(b.findtext("size")): int(b.findtext("writes")) for b in bricks[0].iter("block")
                            if int(b.findtext("writes") or 0)},
            "written": int(bricks[0].findtext("totalWrite") or 0),
            "read": sum(int(stats.findtext("totalRead") or 0) for stats in bricks), "fops": fops}


def _profiled(client, measure):
    """measure() with io-stats cleared before: its MiB/s, what the bricks saw
    (_brick_stats) and the CPU seconds it took: the client's (the glusterfs
    FUSE process matching `client`; None: the children, qemu-img with
    libgfapi in it), the bricks', and the machine's busy time."""
    def counters():
        return (_cpu_seconds(client) if client else _children_cpu_seconds(), _cpu_seconds(_bricks),
                machine_busy()[0])
    _cli("volume", "profile", "virt3", "info", "clear")
    before = counters()
    mib_s = measure()
    after = counters()
    return {"mib_s": mib_s or 0,  # 0: qemu-img bench failed
            **_brick_stats(_cli("volume", "profile", "virt3", "info", "--xml")),
            **{key: a - b for key, a, b in zip(("client_cpu_s", "bricks_cpu_s", "busy_s"), after, before)}}


def _less(whole, part):
    """_profiled's figures of `whole` less those of `part`; whole's MiB/s."""
    none = [0, 0.0]
    return {"mib_s": whole["mib_s"],
            **{key: whole[key] - part[key] for key in ("written", "read", "client_cpu_s", "bricks_cpu_s", "busy_s")},
            "write_sizes": {size: n - part["write_sizes"].get(size, 0) for size, n in whole["write_sizes"].items()},
            "fops": {fop: [calls - part["fops"].get(fop, none)[0], ns - part["fops"].get(fop, none)[1]]
                     for fop, (calls, ns) in whole["fops"].items()}}


def _qemu_profiled(uri, pattern, seconds, **shape):
    """_profiled for qemu-img bench, without what libgfapi's connect and
    disconnect cost (the FUSE paths paid theirs once, at the mount): a run
    of `seconds` less a run of an eighth as many requests."""
    count = run_bench.qemu_count(uri, pattern, seconds, **shape) or 8
    part = _profiled(None, lambda: run_bench.qemu_run(uri, pattern, count // 8, **shape))
    return _less(_profiled(None, lambda: run_bench.qemu_run(uri, pattern, count, **shape)), part)


# The patterns of the request profile: 4 KiB, where a request's cost is per request.
REQUEST_PATTERNS = ("rand_read_4k_qd1", "rand_write_4k_qd1", "rand_read_4k_qd32", "rand_write_4k_qd32")


def profile(size_mib, seconds):
    """Where the time goes on virt3, GlusterFS's own io-stats on (volume
    profile) and the CPU time counted, through the FUSE file, the loop
    device and QEMU's gluster driver.

    writes: sequential 1 MiB writes: the write sizes the bricks receive,
    their mean latency at the brick, and the CPU time of the client and the
    three bricks per GiB written. 128 KiB writes at depth 8 through QEMU are
    what the FUSE client turns a 1 MiB write into (its max_write).

    requests: each 4 KiB pattern in REQUEST_PATTERNS: the calls the bricks
    get per request, the brick's mean latency of a read or a write, and the
    CPU time per request of the client, the bricks and the whole machine."""
    name = run_bench.new_name()
    run_bench.provider("create", {"VOL_NAME": name, "VOL_SIZE": str(size_mib), "EXTP_PREALLOCATION": "full"},
                       volume=VIRT3)
    lines = run_bench.provider("attach", {"VOL_NAME": name}, volume=VIRT3)[2].split("\n")
    device, uri = lines[0], lines[1][len("kvm:"):]
    fuse_file = run_bench.image(name + ".fuse", VIRT3)
    run_bench.zero_file(fuse_file, size_mib)
    paths = {"FUSE file": lambda pattern: _profiled(_fuse_client, lambda: run_bench.fio(
                 fuse_file, pattern, size_mib, seconds)),
             "loop device": lambda pattern: _profiled(_fuse_client, lambda: run_bench.fio(
                 device, pattern, size_mib, seconds)),
             "QEMU gluster://": lambda pattern, **shape: _qemu_profiled(uri, pattern, seconds, **shape)}
    writers = [(f"{path}, 1 MiB, depth 1", lambda measure=measure: measure("seq_write_1m"))
               for path, measure in paths.items()] + \
        [("QEMU gluster://, 128 KiB, depth 8", lambda: _qemu_profiled(uri, "seq_write_1m", seconds,
                                                                      block=128 * 1024, depth=8))]
    writes, requests = {}, {pattern: {} for pattern in REQUEST_PATTERNS}
    _cli("volume", "profile", "virt3", "start")
    try:
        for what, measure in writers:
            found = measure()
            gib = found["written"] / 2 ** 30 or 1
            calls, latency = found["fops"].get("WRITE", [0, 0])
            writes[what] = {"mib_s": found["mib_s"],
                            "brick_writes": {str(k): v for k, v in found["write_sizes"].items()},
                            "brick_write_latency_ns": latency / (calls or 1), "brick_gib": found["written"] / 2 ** 30,
                            "client_cpu_s_per_gib": found["client_cpu_s"] / gib,
                            "bricks_cpu_s_per_gib": found["bricks_cpu_s"] / gib}
        for pattern in REQUEST_PATTERNS:
            fop = "WRITE" if "write" in pattern else "READ"
            for path, measure in paths.items():
                found = measure(pattern)
                count = (found["written"] if fop == "WRITE" else found["read"]) / 4096 or 1
                calls, latency = found["fops"].get(fop, [0, 0])
                requests[pattern][path] = {
                    "iops": found["mib_s"] * run_bench.MIB / 4096,
                    "brick_calls_per_request": {fop_name: n / count for fop_name, (n, _) in found["fops"].items()},
                    "brick_latency_us": latency / (calls or 1) / 1000,
                    "client_cpu_us": 1e6 * found["client_cpu_s"] / count,
                    "bricks_cpu_us": 1e6 * found["bricks_cpu_s"] / count,
                    "machine_cpu_us": 1e6 * found["busy_s"] / count,
                    # over the requests' own time (count / IOPS): qemu-img's connect is not in it
                    "machine_cores": found["busy_s"] * found["mib_s"] * run_bench.MIB / 4096 / count}
    finally:
        _cli("volume", "profile", "virt3", "stop")
        os.unlink(fuse_file)
        run_bench.cleanup([name], VIRT3)
    return {"writes": writes, "requests": requests}


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
    client = []
    for _, argv in processes():
        if _fuse_client(argv):
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
        profile = r3.get("write_profile")
        if profile:
            lines += ["Where a sequential write's time goes: GlusterFS's own io-stats (`volume profile`) on "
                      "the first brick, and CPU time per GiB written of the client (the glusterfs FUSE "
                      "process; for QEMU, qemu-img with libgfapi in it, a run less one of an eighth as many "
                      "requests, so that libgfapi's connect, which the FUSE client made once at the mount, is "
                      "not in it) and of the three bricks; from these "
                      "and the speed, the CPUs the client and the bricks kept busy, of this machine's "
                      f"{os.cpu_count()}. 128 KiB writes at depth 8 through QEMU "
                      "are what the FUSE client makes of one 1 MiB write: glusterfs's FUSE bridge offers "
                      "the kernel a max_write of 128 KiB, fixed in its code (no mount option).", "",
                      "| writer | MiB/s | writes at the brick, by size | brick WRITE mean latency | "
                      "client CPU s/GiB | bricks' CPU s/GiB | CPUs busy (client + bricks) |", "|---|---|---|---|---|---|---|"]
            for what, v in profile.items():
                total = sum(v["brick_writes"].values()) or 1
                sizes = ", ".join(f"{_size(int(k))} {100 * n / total:.0f}%" for k, n in v["brick_writes"].items()
                                  if n / total >= 0.01)
                speed = v["mib_s"] or 0  # 0: qemu-img bench failed
                lines.append(f"| {what} | {speed:.0f} | {sizes} | {v['brick_write_latency_ns'] / 1e6:.2f} ms | "
                             f"{v['client_cpu_s_per_gib']:.2f} | {v['bricks_cpu_s_per_gib']:.2f} | "
                             f"{(v['client_cpu_s_per_gib'] + v['bricks_cpu_s_per_gib']) * speed / 1024:.2f} |")
            lines.append("")
        requests = r3.get("request_profile")
        if requests:
            lines += ["Where a 4 KiB request's time goes: the calls the three bricks get per request (GlusterFS's "
                      "io-stats), the mean latency of a READ or WRITE at the brick, and the CPU time per request "
                      "of the client, of the three bricks and of the whole machine (fio or qemu-img, the kernel "
                      "and the loop device's worker too; QEMU's less its connect, as above); the last column is "
                      f"how many of the machine's {os.cpu_count()} CPUs were busy while the requests ran. Where "
                      "they all are, requests per second are the CPUs over the machine's CPU time per request, "
                      "and a path's speed is what its requests cost.", "",
                      "| pattern | path | IOPS | calls at the bricks per request | brick mean latency | client CPU "
                      "us/request | bricks' CPU us/request | machine CPU us/request | CPUs busy |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for pattern, paths in requests.items():
                for path, v in paths.items():
                    calls = ", ".join(f"{fop} {n:.2f}" for fop, n in sorted(v["brick_calls_per_request"].items(),
                                                                           key=lambda item: -item[1]) if n >= 0.01)
                    lines.append(f"| {pattern} | {path} | {v['iops']:.0f} | {calls} | {v['brick_latency_us']:.0f} us | "
                                 f"{v['client_cpu_us']:.0f} | {v['bricks_cpu_us']:.0f} | {v['machine_cpu_us']:.0f} | "
                                 f"{v['machine_cores']:.2f} |")
            lines.append("")
    k = results.get("replica3_knobs")
    if k:
        patterns = list(run_bench.FIO_PATTERNS)
        lines += ["## Kernel-path tuning on virt3: each knob against the defaults", "",
                  f"Each variant is a node setting given to attach; each gets a glusterfs client of its own "
                  f"(mounted by that attach). The variants take turns, {k['rounds']} rounds of fio "
                  f"({k['size_mib']} MiB, {k['seconds']} s per run; medians), the FUSE file and the loop "
                  "device of the same mount one after the other. Figures are MiB/s over the defaults' in the "
                  "same run; \"defaults again\" is the defaults measured once more, as another variant: "
                  "how far chance alone moves a figure here.", ""]
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


def _size(n):
    return f"{n // 2 ** 20} MiB" if n >= 2 ** 20 else f"{n // 1024} KiB" if n >= 1024 else f"{n} B"


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
