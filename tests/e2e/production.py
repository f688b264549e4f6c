"""make e2e on production-shaped GlusterFS: three GlusterFS hosts in network
namespaces of their own on the e2e's bridge (tests/harness/gluster_hosts.py
production: replica 3, arbiter, 2 x 3, all group virt), mounted by both
Ganeti nodes with backup volfile servers, and a real Linux guest
(tests/guest) that Ganeti's KVM boots from a disk on them.

The guest writes a verifiable stream (seqio: sequence-numbered 4 KiB blocks,
O_DIRECT|O_DSYNC, each acknowledged write reported on its serial console)
while gnt-instance migrate moves it node 1 -> node 2 -> node 1 and failover
moves it again; once more with a GlusterFS host killed during a migration
and brought back. Afterwards every acknowledged write must be on the disk, in
order (seqio verify against the console's log), the heals complete and the
replicas identical.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import cluster
from steps import Step, check, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTS_TOOL = os.path.join(ROOT, "tests", "harness", "gluster_hosts.py")
# The hosts join the e2e's bridge at 10.79.0.21-23, beside the nodes (.11, .12).
HOSTS_ENV = {"GLUSTER_HOSTS_BRIDGE": cluster.BRIDGE, "GLUSTER_HOSTS_SUBNET": "10.79.0",
             "GLUSTER_HOSTS_FIRST": "20", "GLUSTER_HOSTS_DIR": "/tmp/ganeti-e2e-hosts"}
HOST_ADDRESSES = [f"{HOSTS_ENV['GLUSTER_HOSTS_SUBNET']}.{int(HOSTS_ENV['GLUSTER_HOSTS_FIRST']) + i}"
                  for i in (1, 2, 3)]
SERIAL = "/run/ganeti/kvm-hypervisor/ctrl/{instance}.serial"
DISK_MIB = 128
MIB = 1 << 20
# What make e2e prints at the end: per guest, its moves and what seqio verify found.
FIGURES = []


def hosts(*args, check_ok=True):
    result = subprocess.run(["/usr/bin/python3", HOSTS_TOOL, *args], capture_output=True, text=True,
                            timeout=300, env={**os.environ, **HOSTS_ENV})
    if check_ok and result.returncode != 0:
        raise RuntimeError(f"gluster_hosts.py {' '.join(args)}: {result.stderr.strip()[-800:]}")
    return result


def hosts_cli(*args):
    return hosts("cli", "1", *args, check_ok=False).stdout


def brick_dirs(volume):
    """The volume's brick directories, as gluster_hosts.py lays them out."""
    state = HOSTS_ENV["GLUSTER_HOSTS_DIR"]
    return [line.split(":", 1)[1].strip().split(":", 1)[1].split()[0]  # no " (arbiter)"
            for line in hosts_cli("volume", "info", volume).splitlines()
            if line.startswith("Brick") and ":" in line and state in line]


class SerialLog:
    """The guest's serial console, from whichever node runs it: one reader
    per node keeps connecting to that node's QEMU serial socket, so the
    migration target's is read from the moment its QEMU listens. Lines are
    kept with the host's arrival time."""

    def __init__(self, instance):
        self.lines, self.lock, self.stopped = [], threading.Lock(), threading.Event()
        self.readers = [threading.Thread(target=self._read, args=(anchor, instance), daemon=True)
                        for anchor in (cluster.anchor_pid, cluster.anchor2_pid)]
        for reader in self.readers:
            reader.start()

    def _read(self, anchor, instance):
        while not self.stopped.is_set():
            path = f"/proc/{anchor()}/root{SERIAL.format(instance=instance)}"
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(0.5)
                    sock.connect(path)
                    pending = b""
                    while not self.stopped.is_set():
                        try:
                            data = sock.recv(65536)
                        except socket.timeout:
                            continue
                        if not data:
                            break
                        lines = (pending + data).split(b"\n")
                        pending = lines.pop()
                        now = time.monotonic()
                        with self.lock:
                            self.lines += [(now, line.decode(errors="replace").rstrip("\r")) for line in lines]
            except OSError:
                time.sleep(0.1)

    def acks(self):
        """[(host arrival time, sequence, guest ns)] of SEQIO ACK lines."""
        with self.lock:
            lines = list(self.lines)
        found = []
        for arrived, line in lines:
            fields = line.split()
            if len(fields) >= 4 and fields[:2] == ["SEQIO", "ACK"]:
                found.append((arrived, int(fields[2]), int(fields[3])))
        return found

    def boots(self):
        """How often the guest has booted, as its acks tell: a boot starts
        its CLOCK_MONOTONIC again (its console lines before the first ack
        can be missed while no reader is connected)."""
        acks = self.acks()
        return min(1, len(acks)) + sum(1 for a, b in zip(acks, acks[1:]) if b[2] < a[2])

    def trouble(self):
        """The kernel's first lines about a crash, if the console has any."""
        with self.lock:
            lines = [line for _, line in self.lines]
        return " | ".join(line.strip() for line in lines if any(
            word in line for word in ("BUG:", "Oops", "RIP:", "Kernel panic", "GG NODISK", "SEQIO ERR")))[:600]

    def text(self):
        with self.lock:
            return "\n".join(line for _, line in self.lines) + "\n"

    def stop(self):
        self.stopped.set()
        for reader in self.readers:
            reader.join(5)


def pause(acks, started, ended, guest_clock=True):
    """The longest pause in the acknowledged stream during a move, in ms:
    between two consecutive acks of which the first reached the host before
    the move ended and the second after it started; as they reached the
    host, and in the guest's own clock (its CLOCK_MONOTONIC at each write;
    None after a failover, which boots the guest again)."""
    pairs = [(a, b) for a, b in zip(acks, acks[1:]) if a[0] <= ended and b[0] >= started]
    host = max((b[0] - a[0] for a, b in pairs), default=0) * 1000
    guest = max(((b[2] - a[2]) / 1e6 for a, b in pairs), default=0)
    return round(host), round(guest) if guest_clock else None


def acked_since(serial, moment):
    return sum(1 for arrived, _, _ in serial.acks() if arrived > moment)


def moved(context, instance, serial, kind, target, boots, began, ended):
    """The checks after a move and its figures: the instance runs on target;
    the guest was not restarted (a failover restarts it once); it goes on
    acknowledging writes, counted from the move's end, so that acks the old
    QEMU sent before it stopped do not count."""
    name = target.split(".")[0]
    check(context, f"the instance runs on {name}", where(instance) == target)
    check(context, "the guest goes on acknowledging writes", wait_for(lambda: acked_since(serial, ended) >= 50, 120))
    restarts = serial.boots() - boots
    expected = 1 if kind == "failover" else 0
    check(context, f"the guest {'booted once again' if expected else 'was not restarted'}", restarts == expected)
    if restarts != expected:
        print(f"    the guest booted {restarts} times; its console: {serial.trouble() or '(nothing unusual)'}")
    host, guest = pause(serial.acks(), began, ended, guest_clock=kind == "migrate")
    print(f"    {kind}: {ended - began:.1f} s; longest pause between acked writes: {host} ms as they "
          f"reached the host" + (f", {guest} ms in the guest's clock" if guest is not None else ""))
    return {"seconds": round(ended - began, 1), "host_ms": host, "guest_ms": guest}


def move(instance, serial, command, target):
    """gnt-instance migrate or failover under the guest's writes; returns the move's figures."""
    boots, began = serial.boots(), time.monotonic()
    Step("gnt-instance", *command, "-n", target, instance)
    figures = moved(f"gnt-instance {command[0]}", instance, serial, command[0], target, boots, began,
                    time.monotonic())
    return {"move": f"{command[0]} -> {target.split('.')[0]}", **figures}


def kvm_params(guest):
    """Ganeti's KVM hypervisor, booting the guest's kernel with its console
    on the serial socket. kvm_extra=-accel tcg: this machine's /dev/kvm is a
    nested PVM one, which runs only kernels built for it (a stock Debian
    kernel crawls in its decompressor), so QEMU emulates the CPU; Ganeti
    starts, migrates and fails over the instance as a KVM one all the same."""
    kernel, initrd = guest
    return ("kvm:kernel_path=" + kernel + ",initrd_path=" + initrd + ",serial_console=true,"
            "serial_speed=115200,vnc_bind_address=,kvm_extra=-accel tcg,"
            "kernel_args=console=ttyS0 " + GUEST_WRITE_ARGS)


# The guest's kernel command line: write the stream as fast as the disk
# acknowledges, resuming after the last intact block when the guest starts
# again (after a failover).
GUEST_WRITE_ARGS = "rootfstype=ramfs panic=-1 gg.run=seqwrite gg.rate=0 gg.resume=1"


def guest_files():
    """The kernel and initramfs (tests/guest/build), copied under the e2e's
    state, which both platforms' nodes see at the same path; and the host's
    seqio."""
    built = cluster.sh(os.path.join(ROOT, "tests", "guest", "build"), timeout=900).stdout.split()
    target = os.path.join(cluster.STATE, "guest")
    os.makedirs(target, exist_ok=True)
    copies = []
    for path in built[:2]:
        copy = os.path.join(target, os.path.basename(path))
        cluster.sh("cp", path, copy)
        copies.append(copy)
    return tuple(copies), built[2]


def write_pools():
    with open(cluster.host(cluster.PROVIDER_CONFIG), "a") as handle:
        for volume in ("virt3", "arb3", "dr23"):
            handle.write(f"GLUSTER_POOL_{volume.upper()}_SERVERS={','.join(HOST_ADDRESSES)}\n"
                         f"GLUSTER_POOL_{volume.upper()}_VOLUME={volume}\n")


def where(instance):
    return cluster.inside("gnt-instance", "list", "--no-headers", "-o", "pnode", instance).stdout.strip()


def verify_disk(instance, serial, seqio, context):
    """Stops the instance (QEMU killed: what a crash leaves), maps its disk and
    has seqio verify it against every ack the console carried."""
    Step("gnt-instance", "stop", "--timeout=0", instance)
    activated = Step("gnt-instance", "activate-disks", instance)
    device = activated.output.strip().splitlines()[-1].rsplit(":", 1)[1]
    log = os.path.join(cluster.STATE, f"{instance}.serial.log")
    with open(log, "w") as handle:
        handle.write(serial.text())
    result = cluster.sh(seqio, "verify", device, "--acked", log, check=False)
    print(f"    seqio verify: {result.stdout.strip()[:600]}")
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = {}
    acked = report.get("acked", 0)
    check(context, f"all {acked} acknowledged writes are on the disk, in order",
          result.returncode == 0 and report.get("ok") is True and acked > 0)
    Step("gnt-instance", "deactivate-disks", instance)
    return report


def record(volume, access, moves, report):
    FIGURES.append({"volume": volume, "access": access, "moves": moves, "acked": report.get("acked"),
                    "verified": report.get("verified"),
                    "lost": sum(report.get(k, 0) for k in ("missing_count", "torn_count", "stale_count"))
                    if report else None})


def print_figures():
    """One line per move: the guest's volume and access path, the move, its
    length and the longest pause it caused; and per guest what seqio
    verify found on the disk afterwards."""
    print(f"\ne2e production figures ({cluster.PLATFORM.name}, Ganeti {cluster.PLATFORM.ganeti}):")
    print(f"  {'volume':<6} {'access':<11} {'move':<36} {'s':>5} {'pause ms (host/guest)':>21}")
    for row in FIGURES:
        for m in row["moves"]:
            guest = "-" if m["guest_ms"] is None else m["guest_ms"]
            print(f"  {row['volume']:<6} {row['access']:<11} {m['move']:<36} {m['seconds']:>5} "
                  f"{str(m['host_ms']) + ' / ' + str(guest):>21}")
        print(f"  {row['volume']:<6} {row['access']:<11} acknowledged writes {row['acked']}, verified on the "
              f"disk in order {row['verified']}, lost {row['lost']}")


def migrations(guest, seqio):
    """The guest on the replica-3 volume, moved under I/O: migrate to node 2
    and back, failover to node 2; then a migration during which GlusterFS
    host 3 dies."""
    one, two = cluster.NODE, cluster.NODE2
    instance = "inst9.example.com"
    Step("gnt-instance", "add", "-t", "ext", "--disk", f"0:size={DISK_MIB}M,provider=gluster,pool=virt3",
         "-H", kvm_params(guest), "--no-nics", "-o", "e2e-dummy", "--no-install", "--no-ip-check",
         "--no-name-check", "--no-start", "-n", one, "-B", "memory=512", instance)
    serial = SerialLog(instance)
    try:
        start = Step("gnt-instance", "start", instance)
        start.check("the Linux guest booted and acknowledges writes on its console",
                    wait_for(lambda: len(serial.acks()) >= 50, 90))
        moves = [move(instance, serial, ("migrate", "-f"), two), move(instance, serial, ("migrate", "-f"), one),
                 move(instance, serial, ("failover", "-f", "--shutdown-timeout=0"), two)]
        moves.append(host_killed(instance, serial, one))
        report = verify_disk(instance, serial, seqio, "the guest's migrations and failover")
        record("virt3", "kernelspace", moves, report)
        replicas_identical("virt3")
    finally:
        serial.stop()
    Step("gnt-instance", "remove", "-f", instance)


def host_killed(instance, serial, target):
    """A migration during which GlusterFS host 3 dies (SIGKILL of all its
    processes); then the host comes back. Returns the migration's figures."""
    boots, began = serial.boots(), time.monotonic()
    migrate = subprocess.Popen(cluster.node_command(cluster.anchor_pid(),
                                                    ["gnt-instance", "migrate", "-f", "-n", target, instance]),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(f"\n$ gnt-instance migrate -f -n {target} {instance}   (GlusterFS host 3 killed meanwhile)")
    time.sleep(1)
    hosts("kill", "3")
    output, _ = migrate.communicate(timeout=600)
    ended = time.monotonic()
    context = "a migration while GlusterFS host 3 died"
    check(context, "the migration succeeded", migrate.returncode == 0)
    if migrate.returncode:
        print(output[-2000:])
    figures = moved(context, instance, serial, "migrate", target, boots, began, ended)
    print("\n$ (GlusterFS host 3 back: its glusterd restarts its bricks)")
    hosts("revive", "3")
    check("host 3 back", "its bricks are online again", wait_for(lambda: bricks_online("virt3") == 3, 60))
    back = time.monotonic()
    check("host 3 back", "the guest goes on acknowledging writes", wait_for(lambda: acked_since(serial, back) >= 50, 90))
    return {"move": f"migrate -> {target.split('.')[0]}, host 3 killed", **figures}


def bricks_online(volume):
    status = hosts_cli("volume", "status", volume, "detail")
    return status.count("Online               : Y")


def heal_pending(volume):
    """Entries still to heal on all bricks, or None when a brick is not answering."""
    summary = hosts_cli("volume", "heal", volume, "info", "summary")
    counts = [int(line.split(":")[1]) for line in summary.splitlines()
              if line.startswith("Total Number of entries:")]
    return sum(counts) if counts and "Transport endpoint" not in summary else None


def brick_digests(directory):
    """sha256 of every data file of a brick (the images and their shards),
    by path; GlusterFS's own .glusterfs is left out."""
    digests = {}
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d != ".glusterfs"]
        for name in files:
            path = os.path.join(root, name)
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(4 * MIB), b""):
                    digest.update(chunk)
            digests[os.path.relpath(path, directory)] = digest.hexdigest()
    return digests


def replicas_identical(volume):
    """After the instance stopped: the heals complete, and each replica set's
    bricks hold the same files with the same bytes (an arbiter brick the
    same files, empty)."""
    hosts_cli("volume", "heal", volume)
    started = time.monotonic()
    healed = wait_for(lambda: heal_pending(volume) == 0, 180)
    context = f"{volume}, its instance stopped"
    check(context, f"no heal pending ({time.monotonic() - started:.0f} s)", healed)
    bricks = brick_dirs(volume)
    sets = [bricks[i:i + 3] for i in range(0, len(bricks), 3)]
    arbiter = volume == "arb3"
    shards_per_set = []
    for replica_set in sets:
        digests = [brick_digests(b) for b in replica_set]
        data = digests[:2] if arbiter else digests
        shards_per_set.append(len([p for p in data[0] if p.startswith(".shard/")]))
        same = all(d == data[0] for d in data) and (not arbiter or set(digests[2]) == set(digests[0]))
        check(context, f"the replicas {'(2 data, 1 arbiter) ' if arbiter else ''}of "
              f"{len(data[0])} data files ({shards_per_set[-1]} shards) are identical", same)
    if len(sets) > 1:
        check(context, "the disk's shards lie on both replica sets", all(shards_per_set))


# dr23's disk: 1 GiB, filled with zeros before the guest starts, so that its
# 16 pieces of 64 MiB (the base file and 15 shards) are placed by DHT across
# both replica sets (all on one set: a chance of 1 in 2^15).
SPREAD_DISK_MIB = 1024


def other_shapes(guest, seqio):
    """The arbiter and the 2 x 3 volume: the guest boots from a disk on each,
    writes through one migration, and its stream is verified; the replicas
    agree (an arbiter brick holds the files' names and metadata, no data).
    On the arbiter volume the disk is a userspace one (QEMU's gluster driver;
    Ganeti 3.1 with docs/'s patch on both nodes)."""
    one, two = cluster.NODE, cluster.NODE2
    for number, volume, access, size in ((10, "arb3", "userspace", DISK_MIB),
                                         (11, "dr23", "kernelspace", SPREAD_DISK_MIB)):
        instance = f"inst{number}.example.com"
        Step("gnt-instance", "add", "-t", "ext", "--disk",
             f"0:size={size}M,provider=gluster,pool={volume},access={access}",
             "-H", kvm_params(guest), "--no-nics", "-o", "e2e-dummy", "--no-install", "--no-ip-check",
             "--no-name-check", "--no-start", "-n", one, "-B", "memory=512", instance)
        if volume == "dr23":
            fill_with_zeros(instance, size)
        serial = SerialLog(instance)
        try:
            start = Step("gnt-instance", "start", instance)
            start.check(f"the Linux guest boots from {volume} ({access}) and acknowledges writes",
                        wait_for(lambda: len(serial.acks()) >= 50, 120))
            moves = [move(instance, serial, ("migrate", "-f"), two)]
            report = verify_disk(instance, serial, seqio, f"the guest's migration on {volume}")
            record(volume, access, moves, report)
            replicas_identical(volume)
        finally:
            serial.stop()
        Step("gnt-instance", "remove", "-f", instance)


def fill_with_zeros(instance, size_mib):
    activated = Step("gnt-instance", "activate-disks", instance)
    device = activated.output.strip().splitlines()[-1].rsplit(":", 1)[1]
    print(f"    (the whole disk written with zeros through {device})")
    cluster.sh("dd", "if=/dev/zero", f"of={device}", "bs=4M", f"count={size_mib // 4}", "oflag=direct",
               "status=none", timeout=600)
    Step("gnt-instance", "deactivate-disks", instance)


def run():
    print("\n$ (three GlusterFS hosts on the nodes' bridge: volumes virt3, arb3, dr23, group virt)", flush=True)
    hosts("production")
    try:
        write_pools()
        guest, seqio = guest_files()
        if cluster.PLATFORM.ganeti == "3.1":
            print("\n$ (node 2: Ganeti 3.1 with docs/ganeti-3.1-kvm-gluster-userspace.patch, noded restarted)")
            cluster.patch_ganeti_kvm_utils(cluster.inside2)
        migrations(guest, seqio)
        other_shapes(guest, seqio)
        print_figures()
    finally:
        hosts("down", check_ok=False)


if __name__ == "__main__":
    sys.exit("run through run_e2e.py (E2E_ONLY=production)")
