"""Bench section in_guest: what a VM gets. fio inside the test guest
(tests/guest: Debian's kernel, busybox, fio) booted by QEMU from a disk on
virt3 (replica3.py's hosts), on both access paths, against the host's own
figures for the same disk in the same run:

  kernelspace: the loop device of the provider's attach as a virtio disk
               (cache=none, aio=native: what Ganeti's KVM gives it), against
               fio on the host on a FUSE file of the same mount;
  userspace:   the gluster:// URI of attach's second line, QEMU's gluster
               driver, against qemu-img bench on the same URI;
  null disk:   QEMU's null-co driver, whose requests complete at once: what
               the guest and QEMU's virtio disk cost without any storage.
               (null-co's latency-ns cannot stand in for the storage here:
               QEMU's timers on this machine fire in steps of about 1 ms.)

QEMU's accelerator is GUEST_ACCEL (default kvm). On a machine whose /dev/kvm
cannot run a stock kernel (a nested PVM one) bench/run sets tcg: the guest's
CPU is then emulated, and the guest's figures are those of an emulated CPU.
"""

import base64
import json
import os
import re
import subprocess
import tempfile
import threading
import time

import replica3
import run_bench

GUEST_BUILD = os.path.join(run_bench.ROOT, "tests", "guest", "build")
ACCEL = os.environ.get("GUEST_ACCEL", "kvm")
BOOT_TIMEOUT_S = 120  # a boot takes seconds with KVM, 5-10 s under TCG
FIO_RESULT = re.compile(r"^GG FIO BEGIN\n(.*?)^GG FIO END rc=(\d+)$", re.S | re.M)
# The targets: (what, the guest's access path, the host's figure it is held against, lowest ratio)
TARGETS = [("in-guest kernelspace >= 0.9x the host's FUSE file", "kernelspace", "host_fuse_file", 0.9),
           ("in-guest userspace >= 0.9x qemu-img bench on the URI", "userspace", "host_qemu_img_bench", 0.9)]


def guest_files():
    """(kernel, initrd) of the test guest, built or from its cache."""
    built = subprocess.run([GUEST_BUILD], check=True, timeout=1800, stdout=subprocess.PIPE, text=True)
    return built.stdout.split("\n")[:2]


def job_file(size_mib, seconds):
    """One fio job per pattern, one after the other (stonewall), as
    run_bench.fio runs them on the host."""
    lines = ["[global]", "direct=1", "ioengine=libaio", f"size={size_mib}M", f"runtime={seconds}", "time_based"]
    for pattern, args in run_bench.FIO_PATTERNS.items():
        lines += [f"[{pattern}]", "stonewall"] + [arg[2:] for arg in args]
    return "\n".join(lines) + "\n"


class HostCpu(threading.Thread):
    """Samples, twice a second while QEMU runs and until the guest's serial
    log shows fio's end, QEMU's CPU time and the machine's busy time;
    window(seconds) gives both as cores in use over the last `seconds`: the
    guest's fio (QEMU's exit, libgfapi's disconnect, is not in it)."""

    def __init__(self, pid, serial_log):
        super().__init__(daemon=True)
        self.pid, self.serial_log, self.samples = pid, serial_log, []

    def run(self):
        while (cpu := replica3.cpu_seconds(self.pid)) is not None:
            self.samples.append((time.monotonic(), cpu, *replica3.machine_busy()))
            with open(self.serial_log, "rb") as log:
                if b"GG FIO END" in log.read():
                    return
            time.sleep(0.5)

    def window(self, seconds):
        inside = [s for s in self.samples if s[0] >= self.samples[-1][0] - seconds] if self.samples else []
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < seconds / 2:
            return None
        (t0, cpu0, busy0, all0), (t1, cpu1, busy1, all1) = inside[0], inside[-1]
        return {"qemu_cores": (cpu1 - cpu0) / (t1 - t0),
                "machine_busy_cores": os.cpu_count() * (busy1 - busy0) / (all1 - all0)}


def in_guest_fio(kernel, initrd, drive, size_mib, seconds):
    """{pattern: (MiB/s, the guest's CPU busy, %)} of fio in a guest booted
    with `drive` as its disk, and the host's CPU over the guest's fio
    (HostCpu.window). The guest's CPU share is fio's own usr + sys figure,
    as the guest's clock sees it."""
    job = base64.b64encode(job_file(size_mib, seconds).encode()).decode()
    with tempfile.NamedTemporaryFile(prefix="bench-guest-", suffix=".serial") as log:
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", ACCEL, "-m", "512", "-smp", "1", "-nodefaults", "-display", "none",
             "-no-reboot", "-kernel", kernel, "-initrd", initrd,
             "-append", f"console=ttyS0 panic=-1 rootfstype=ramfs gg.run=fio gg.fio={job}",
             "-serial", f"file:{log.name}", "-drive", drive],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        host_cpu = HostCpu(qemu.pid, log.name)
        host_cpu.start()
        try:  # the guest powers off after its job
            stderr = qemu.communicate(timeout=BOOT_TIMEOUT_S + len(run_bench.FIO_PATTERNS) * (seconds + 10))[1]
        except subprocess.TimeoutExpired:
            qemu.kill()
            stderr = qemu.communicate(timeout=30)[1]
        finally:
            if qemu.poll() is None:  # interrupted
                qemu.kill()
        text = open(log.name, errors="replace").read().replace("\r\n", "\n")
    found = FIO_RESULT.search(text)
    if not found or found.group(2) != "0":
        raise RuntimeError(f"no fio result from the guest on {drive}: {stderr.strip()[-500:]}\n{text[-2000:]}")
    jobs = {job["jobname"]: job for job in json.loads(found.group(1))["jobs"]}
    host_cpu.join(5)
    return {pattern: (jobs[pattern]["write" if "write" in pattern else "read"]["bw_bytes"] / run_bench.MIB,
                      jobs[pattern]["usr_cpu"] + jobs[pattern]["sys_cpu"])
            for pattern in run_bench.FIO_PATTERNS}, host_cpu.window(len(run_bench.FIO_PATTERNS) * seconds)


def in_guest(quick):
    size_mib, seconds = (64, 1) if quick else (512, 5)
    kernel, initrd = guest_files()
    volume = replica3.VIRT3
    name = run_bench.new_name()
    with replica3.hosts():
        run_bench.provider("create", {"VOL_NAME": name, "VOL_SIZE": str(size_mib), "EXTP_PREALLOCATION": "full"},
                           volume=volume)
        device, uri = run_bench.provider("attach", {"VOL_NAME": name}, volume=volume)[2].split("\n")[:2]
        uri = uri[len("kvm:"):]
        fuse_file = run_bench.image(name + ".fuse", volume)
        try:
            run_bench.zero_file(fuse_file, size_mib)
            rows = {pattern: {"host_fuse_file": run_bench.fio(fuse_file, pattern, size_mib, seconds),
                              "host_qemu_img_bench": run_bench.qemu_bench(uri, pattern, seconds)}
                    for pattern in run_bench.FIO_PATTERNS}
            paths = {"kernelspace": f"file={device},if=virtio,format=raw,cache=none,aio=native",
                     "userspace": f"file={uri},if=virtio,format=raw,cache=none",
                     # no storage at all: what the guest and QEMU's virtio path cost alone
                     "null_disk": f"if=virtio,driver=null-co,size={size_mib * run_bench.MIB},read-zeroes=on,"
                                  "cache.direct=on"}
            host_cpu = {}
            for access, drive in paths.items():
                found, host_cpu[access] = in_guest_fio(kernel, initrd, drive, size_mib, seconds)
                for pattern, (mib_s, cpu) in found.items():
                    rows[pattern][access], rows[pattern][access + "_guest_cpu_percent"] = mib_s, cpu
        finally:
            if os.path.exists(fuse_file):
                os.unlink(fuse_file)
            run_bench.cleanup([name], volume)
    return {"accel": ACCEL, "size_mib": size_mib, "seconds": seconds, "patterns": rows, "targets": targets(rows),
            "host_cpu": host_cpu}


def targets(rows):
    """[what, pattern, ratio, limit, met] of each target on each pattern."""
    found = []
    for what, access, host, limit in TARGETS:
        for pattern, row in rows.items():
            ratio = row[access] / row[host] if row.get(host) else None
            found.append([what, pattern, ratio, limit, ratio is not None and ratio >= limit])
    return found


def report_lines(results):
    g = results.get("in_guest")
    if not g:
        return []
    lines = ["## Inside a guest (virt3), MiB/s", "",
             f"fio in the test guest (Debian's kernel, one vCPU, QEMU -accel {g['accel']}) on a "
             f"{g['size_mib']} MiB disk on virt3, {g['seconds']} s per pattern; beside it the host's own "
             "figures for the same disk in the same run: fio on a FUSE file of the same mount, and "
             "qemu-img bench on the disk's gluster:// URI." +
             (" Under TCG the guest's CPU is emulated: its figures are those of an emulated CPU, not of "
              "the storage." if g["accel"] == "tcg" else ""), "",
             "The guest's CPU is fio's own usr + sys share in the guest: near 100% the guest's one "
             "vCPU, not the storage, sets the pace.", "",
             "| pattern | host FUSE file | guest kernelspace | ratio | guest CPU | host qemu-img bench | "
             "guest userspace | ratio | guest CPU |", "|---|---|---|---|---|---|---|---|---|"]
    for pattern, row in g["patterns"].items():
        fuse, qemu = row["host_fuse_file"], row["host_qemu_img_bench"]
        cells = [pattern, f"{fuse:.0f}", f"{row['kernelspace']:.0f}", f"{row['kernelspace'] / fuse:.2f}x",
                 _cpu(row, "kernelspace"), f"{qemu:.0f}" if qemu else "-", f"{row['userspace']:.0f}",
                 f"{row['userspace'] / qemu:.2f}x" if qemu else "-", _cpu(row, "userspace")]
        lines.append("| " + " | ".join(cells) + " |")
    met = sum(1 for t in g["targets"] if t[4])
    for access, cpu in g.get("host_cpu", {}).items():
        if cpu:
            lines += ["", f"The host while the guest's fio ran ({access.replace('_', ' ')}): QEMU used "
                          f"{cpu['qemu_cores']:.2f} "
                          f"cores, the machine {cpu['machine_busy_cores']:.2f} of its {os.cpu_count()} "
                          "(QEMU, the glusterfs client and the three bricks share them)."]
    if all("null_disk" in row for row in g["patterns"].values()):
        lines += ["", "The guest's own cost: the same guest's fio on QEMU's null-co disk, whose requests complete "
                      "at once. At depth 1 each request waits for the one before, so its time in the guest is "
                      "at least the host's time for it plus this cost; the columns on the right are times per "
                      "request, measured and summed so. What the guest's time has beyond the sum comes with "
                      "waiting for a real disk (the emulated vCPU idles until the disk's interrupt, on CPUs "
                      "the storage shares), which the null disk never makes it do; these runs do not split "
                      "it further.", "",
                  "| pattern | guest, null disk MiB/s | guest CPU | null disk | host FUSE file | + null disk | "
                  "guest kernelspace | host qemu-img bench | + null disk | guest userspace |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for pattern, row in g["patterns"].items():
            cells = [pattern, f"{row['null_disk']:.0f}", _cpu(row, "null_disk")]
            if pattern in DEPTH_ONE:
                each = {key: _per_request_us(pattern, row.get(key)) for key in (
                    "null_disk", "host_fuse_file", "kernelspace", "host_qemu_img_bench", "userspace")}
                cells += [_us(each["null_disk"]), _us(each["host_fuse_file"]),
                          _us(_sum(each["host_fuse_file"], each["null_disk"])), _us(each["kernelspace"]),
                          _us(each["host_qemu_img_bench"]), _us(_sum(each["host_qemu_img_bench"], each["null_disk"])),
                          _us(each["userspace"])]
            else:
                cells += ["-"] * 7
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Targets (kernelspace >= 0.9x the host's FUSE file, userspace >= 0.9x qemu-img bench, each "
                  f"pattern): {met} of {len(g['targets'])} met.", "", "![in guest](in_guest.png)", ""]
    return lines


DEPTH_ONE = [pattern for pattern, args in run_bench.FIO_PATTERNS.items() if "--iodepth=1" in args]


def _per_request_us(pattern, mib_s):
    size = run_bench.MIB if "--bs=1M" in run_bench.FIO_PATTERNS[pattern] else 4096
    return 1e6 * size / (mib_s * run_bench.MIB) if mib_s else None


def _sum(*times):
    return None if None in times else sum(times)


def _us(value):
    return f"{value:.0f} us" if value is not None else "-"


def _cpu(row, access):
    cpu = row.get(access + "_guest_cpu_percent")  # not in results from before it was measured
    return f"{cpu:.0f}%" if cpu is not None else "-"


def plots(results, out, plt):
    g = results.get("in_guest")
    if not g:
        return
    keys = ("host_fuse_file", "kernelspace", "host_qemu_img_bench", "userspace")
    if all("null_disk" in row for row in g["patterns"].values()):
        keys += ("null_disk",)
    run_bench.pattern_bars(plt, g["patterns"], keys,
                           f"fio inside a guest on virt3 (QEMU -accel {g['accel']}) and on the host",
                           os.path.join(out, "in_guest.png"), log=True)
