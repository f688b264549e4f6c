#!/usr/bin/python3
"""make e2e: the provider, installed from its Debian package, driven by a real
Ganeti cluster (fake and KVM hypervisors) against a real GlusterFS: Debian 12's
Ganeti 3.0 or, with E2E_PLATFORM=debian13, Debian 13's Ganeti 3.1 (cluster.py).

For every Ganeti command it prints the command, the provider calls it
caused (from the provider's own call log) and each assertion on the volume
(image files on the brick, sizes, metadata, open records) and on the node
(loop devices, mounts in noded's namespace). Everything is torn down at the
end, also on failure. E2E_ONLY=kvm runs only the KVM guests, E2E_ONLY=snapshots
only the point-in-time snapshots, E2E_ONLY=partition only the two nodes and the
partition, E2E_ONLY=production only the Linux guest on production-shaped
volumes (production.py).
"""

import os
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import production  # noqa: E402
from steps import Step, check, failures, skipped, wait_for  # noqa: E402

MIB = 1 << 20
BRICKS = {volume: [os.path.join(cluster.GLUSTER_STATE, "bricks", brick, "ganeti") for brick in bricks]
          for volume, bricks in (("gv0", ["gv0"]), ("gv1", ["gv1"]),
                                 (cluster.SPREAD_VOLUME, [cluster.SPREAD_VOLUME + "a", cluster.SPREAD_VOLUME + "b"]))}
# -- what the volume and the node look like ------------------------------------------------

def brick_dirs(volume):
    """Where the volume's images lie: node 1's brick, and once the node-add
    hook has joined node 2's brick to gv0, that one too (on a tmpfs only
    node 2's glusterd sees)."""
    dirs = list(BRICKS[volume])
    pidfile = os.path.join(cluster.NODE2_STATE, "gluster", "glusterd.pid")
    if volume == "gv0" and os.path.exists(pidfile):
        pid = open(pidfile).read().strip()
        dirs.append(f"/proc/{pid}/root{cluster.JOIN_BRICK}/ganeti")
    return [d for d in dirs if os.path.isdir(d)]


def _dht_link(info):
    """DHT's pointer to a file kept on another brick: empty, mode ---------T."""
    return info.st_mode & 0o7777 == 0o1000 and not info.st_size


def images(volume="gv0"):
    found = {}
    for directory in brick_dirs(volume):
        for name in os.listdir(directory):
            info = os.stat(os.path.join(directory, name))
            if not name.startswith(".") and not _dht_link(info):
                found[name] = info
    return found


def image_on_brick(volume, name):
    """The image's path on whichever brick holds its data, or None."""
    paths = [os.path.join(directory, name) for directory in brick_dirs(volume)]
    return next((p for p in paths if os.path.exists(p) and not _dht_link(os.stat(p))), None)


def xattr(volume, name, key):
    try:
        return os.getxattr(image_on_brick(volume, name), key).decode()
    except (OSError, TypeError):
        return None


def open_records(volume, name):
    prefix = "user.ganeti-gluster.open."
    path = image_on_brick(volume, name)
    return {k[len(prefix):]: os.getxattr(path, k).decode().split()[0]
            for k in os.listxattr(path) if k.startswith(prefix)}


def loops():
    """{image name: loop device} for the provider's loop devices."""
    out = cluster.sh("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").stdout
    result = {}
    for line in out.splitlines():
        device, _, backing = line.strip().partition(" ")
        if cluster.MOUNT_BASE + "/" in backing:
            result[os.path.basename(backing.strip())] = device
    return result


def unmounted_within(seconds):
    """Whether every mount of the provider's is gone within `seconds`: a volume
    nothing uses is unmounted GLUSTER_UNMOUNT_DELAY after the last script let go."""
    return wait_for(lambda: not mounts(), seconds)


def mounts():
    """The provider's GlusterFS mounts in noded's namespace: those under its
    mount base. Not every fuse.glusterfs mount: the namespace inherits the
    machine's own (an operator's, another test's), which are none of ours."""
    out = cluster.in_noded("findmnt", "-rn", "-t", "fuse.glusterfs", "-o", "TARGET", check=False).stdout
    return sorted(line.strip() for line in out.splitlines()
                  if line.strip().startswith(cluster.MOUNT_BASE + "/"))


def device_size(device):
    return int(cluster.sh("blockdev", "--getsize64", device).stdout)


# -- the scenario ---------------------------------------------------------------------------------

def scenario():
    node = cluster.NODE
    add = Step("gnt-instance", "add", "-t", "ext", "--disk", "0:size=256M,provider=gluster",
               "--disk", "1:size=128M,provider=gluster,name=data", "-o", "e2e-dummy", "--no-install",
               "--no-ip-check", "--no-name-check", "--no-start", "-n", node, "-B", "memory=128",
               "inst1.example.com")
    found = images()
    disk0 = next(n for n, s in found.items() if s.st_size == 256 * MIB)
    disk1 = next(n for n, s in found.items() if s.st_size == 128 * MIB)
    add.check("add called create, attach, open, setinfo per disk", add.calls == ["create", "attach", "open", "setinfo"] * 2)
    add.check("two images on gv0, 256 and 128 MiB", len(found) == 2)
    add.check("metadata names the instance", xattr("gv0", disk0, "user.ganeti-gluster.metadata") == "originstname+inst1.example.com")
    add.check("node1 holds both disks open exclusively",
              all(open_records("gv0", n) == {node: "exclusive"} for n in (disk0, disk1)))
    add.check("both disks mapped to loop devices (add does not detach)", {disk0, disk1} <= set(loops()))
    add.check("one FUSE mount of gv0 in noded's namespace", mounts() == [f"{cluster.MOUNT_BASE}/gv0"])
    cluster_verify()

    info = Step("gnt-instance", "info", "inst1.example.com")
    info.check("info only attaches", set(info.calls) <= {"attach"} and info.calls)

    start = Step("gnt-instance", "start", "inst1.example.com")
    start.check("start attaches and opens", set(start.calls) <= {"attach", "open"})

    grow = Step("gnt-instance", "grow-disk", "inst1.example.com", "0", "64M")
    grow.check("grow called once with VOL_NEW_SIZE", grow.calls.count("grow") == 1)
    grow.check("image is 320 MiB", images()[disk0].st_size == 320 * MIB)
    grow.check("loop device shows 320 MiB", device_size(loops()[disk0]) == 320 * MIB)
    absolute = Step("gnt-instance", "grow-disk", "--absolute", "inst1.example.com", "0", "400M")
    absolute.check("image is 400 MiB", images()[disk0].st_size == 400 * MIB)
    absolute.check("loop device shows 400 MiB", device_size(loops()[disk0]) == 400 * MIB)

    params = Step("gnt-instance", "modify", "--disk", "0:preallocation=full", "inst1.example.com")
    params.check("changing a disk parameter calls no provider script", params.calls == [])
    full = Step("gnt-instance", "grow-disk", "--absolute", "inst1.example.com", "0", "448M")
    full.check("the next grow sees preallocation=full: the 48 new MiB are written",
               images()[disk0].st_blocks * 512 >= 48 * MIB)

    stop = Step("gnt-instance", "stop", "inst1.example.com")
    stop.check("stop detaches: no loop devices left", not loops())
    stop.check("stop has no close, but detach forgets the open", open_records("gv0", disk0) == {})
    stop.check("the unused mount is released (after GLUSTER_UNMOUNT_DELAY)", unmounted_within(30))

    # A stopped instance: Ganeti 3.0.2's kernelspace hotplug is broken (ganeti#1717).
    before = set(images())
    added = Step("gnt-instance", "modify", "--disk", "add:size=64M,provider=gluster", "inst1.example.com")
    new = set(images()) - before
    added.check("modify --disk add created one 64 MiB image", len(new) == 1 and images()[next(iter(new))].st_size == 64 * MIB)
    removed = Step("gnt-instance", "modify", "--disk", "2:remove", "inst1.example.com")
    removed.check("modify --disk 2:remove removed it", set(images()) == before)
    removed.check("and its loop device", not (new & set(loops())))

    # With --no-name-check rename asks for confirmation on a terminal; the
    # name resolves through the node's /etc/hosts instead.
    rename = Step("gnt-instance", "rename", *cluster.PLATFORM.rename_options, "inst1.example.com",
                  "inst2.example.com")
    rename.check("rename stores the new name with setinfo",
                 xattr("gv0", disk0, "user.ganeti-gluster.metadata") == "originstname+inst2.example.com")

    activate = Step("gnt-instance", "activate-disks", "inst2.example.com")
    activate.check("activate-disks maps both disks", {disk0, disk1} <= set(loops()))
    deactivate = Step("gnt-instance", "deactivate-disks", "inst2.example.com")
    deactivate.check("deactivate-disks unmaps them", not loops())

    Step("gnt-instance", "start", "inst2.example.com")
    broken = cluster.PLATFORM.export_fails
    export = Step("gnt-backup", "export", "-n", node, "--noshutdown", "inst2.example.com", fails=broken)
    export.check("a running export snapshots each disk", export.calls.count("snapshot") == 2)
    export.check("and removes the snapshots afterwards", not [n for n in images() if n.endswith(".snap")])
    if broken:
        export.check("Ganeti 3.1.0~rc2's export fails in socat, after the provider's part (ganeti#1839)",
                     "commonName does not match" in export.output)
    Step("gnt-instance", "stop", "inst2.example.com")
    stopped = Step("gnt-backup", "export", "-n", node, "inst2.example.com", fails=broken)
    stopped.check("a stopped export reads the disks without snapshots", "snapshot" not in stopped.calls
                  and "open" in stopped.calls)
    if broken:
        stopped.check("and fails in socat too (ganeti#1839)", "commonName does not match" in stopped.output)

    remove = Step("gnt-instance", "remove", "-f", "inst2.example.com")
    remove.check("remove removed every image", images() == {})
    remove.check("no loop devices left", not loops())
    remove.check("no mounts left once GLUSTER_UNMOUNT_DELAY (10 s) passed", unmounted_within(30))

    pooled = Step("gnt-instance", "add", "-t", "ext", "--disk", "0:size=128M,provider=gluster,pool=second",
                  "-o", "e2e-dummy", "--no-install", "--no-ip-check", "--no-name-check", "--no-start",
                  "-n", node, "-B", "memory=128", "inst3.example.com")
    pooled.check("pool=second put the disk on gv1", len(images("gv1")) == 1 and images() == {})
    pooled.check("gv1 mounted", mounts() == [f"{cluster.MOUNT_BASE}/gv1"])
    gone = Step("gnt-instance", "remove", "-f", "inst3.example.com")
    gone.check("removed from gv1", images("gv1") == {})
    gone.check("nothing left on the node", not loops() and unmounted_within(30))


def spread_snapshot():
    """snapshot's hole detection where a disk's shards lie on two bricks (a
    sharded distribute volume, pool=spread): the copy has the disk's bytes and
    only the chunks that hold data are allocated."""
    volume, shards = cluster.SPREAD_VOLUME, 16
    Step("gnt-instance", "add", "-t", "ext", "--disk",
               f"0:size={shards * cluster.SPREAD_SHARD // MIB}M,provider=gluster,pool=spread",
               "-o", "e2e-dummy", "--no-install", "--no-ip-check", "--no-name-check", "--no-start",
               "-n", cluster.NODE, "-B", "memory=128", "inst4.example.com")
    name = next(iter(images(volume)))
    device = loops()[name]
    for shard in range(shards):  # 4 KiB in each shard, 1 MiB in: holes before and after it
        write_sectors(device, (shard * cluster.SPREAD_SHARD + MIB) // SECTOR, f"shard {shard}".encode())
    snapshot_name = name + ".e2e-snap"
    print(f"\n$ VOL_NAME={name} VOL_SNAPSHOT_NAME={snapshot_name} EXTP_POOL=spread .../gluster/snapshot")
    made = provider("snapshot", VOL_NAME=name, VOL_SNAPSHOT_NAME=snapshot_name, EXTP_POOL="spread")
    context = "snapshot on the sharded distribute volume"
    check(context, "snapshot succeeded", made.returncode == 0)
    mounted = f"{cluster.MOUNT_BASE}/{volume}/ganeti"
    same = cluster.in_noded("cmp", f"{mounted}/{name}", f"{mounted}/{snapshot_name}", check=False)
    check(context, "the snapshot holds the disk's bytes", same.returncode == 0)
    pieces = shard_files(volume, snapshot_name)
    allocated = sum(blocks for _, blocks in pieces) * 512
    print(f"    snapshot: {len(pieces)} files on the bricks, {allocated // MIB} MiB allocated of "
          f"{shards * cluster.SPREAD_SHARD // MIB} MiB")
    check(context, "its shards lie on both bricks", len({brick for brick, _ in pieces}) == 2)
    check(context, f"only the {shards} 1 MiB chunks holding data are allocated", allocated <= (shards + 1) * MIB)
    provider("remove", VOL_NAME=snapshot_name, EXTP_POOL="spread", check=True)
    gone = Step("gnt-instance", "remove", "-f", "inst4.example.com")
    gone.check(f"nothing left on {volume}", images(volume) == {})
    gone.check("nor on the node", not loops() and unmounted_within(30))


def shard_files(volume, name):
    """(brick, 512-byte blocks) of each file holding the image on the bricks:
    the base file and its shards (.shard/<gfid>.N)."""
    import uuid
    base = image_on_brick(volume, name)
    gfid = str(uuid.UUID(bytes=os.getxattr(base, "trusted.gfid")))
    found = [(os.path.dirname(os.path.dirname(base)), os.stat(base).st_blocks)]
    for directory in BRICKS[volume]:
        shard_dir = os.path.join(os.path.dirname(directory), ".shard")
        for entry in os.listdir(shard_dir) if os.path.isdir(shard_dir) else ():
            if entry.startswith(gfid + "."):
                found.append((os.path.dirname(directory), os.stat(os.path.join(shard_dir, entry)).st_blocks))
    return found


def mapped_on(name, volume="gv0"):
    """The nodes on which the disk is mapped: a loop device whose backing
    file is the image as that node's noded sees it (device and inode)."""
    out = cluster.sh("losetup", "--list", "--noheadings", "--output", "BACK-MAJ:MIN,BACK-INO").stdout
    backed = {tuple(line.split()) for line in out.splitlines() if len(line.split()) == 2}
    nodes = []
    for node, noded in ((cluster.NODE, cluster.noded_pid()), (cluster.NODE2, cluster.noded2_pid())):
        seen = cluster.sh("nsenter", "-t", str(noded), "-m", "stat", "-c", "%d %i",
                          f"{cluster.MOUNT_BASE}/{volume}/ganeti/{name}", check=False)
        if seen.returncode == 0:
            dev, ino = (int(x) for x in seen.stdout.split())
            if (f"{os.major(dev)}:{os.minor(dev)}", str(ino)) in backed:
                nodes.append(node)
    return nodes


def two_nodes():
    print(f"\n$ gnt-node add --no-ssh-key-check {cluster.NODE2}   (node-add hook enabled)", flush=True)
    held = sorted(images())  # the hook rebalances gv0 only if it holds no disk (GLUSTER_JOIN_REBALANCE=no)
    added = cluster.add_node2(join_hook=True)
    one, two = cluster.NODE, cluster.NODE2
    info = cluster.gluster("volume", "info", "gv0").stdout
    pool = cluster.gluster("pool", "list").stdout
    rebalance = cluster.gluster("volume", "rebalance", "gv0", "status").stdout
    print("    " + "\n    ".join(line for line in info.splitlines() if line.startswith(("Type", "Brick"))))
    context = f"gnt-node add {two}"
    checks = [check(context, "the hook made node 2 a GlusterFS peer",
                    any(two in line and "Connected" in line for line in pool.splitlines())),
              check(context, "the hook added node 2's brick to gv0", f"{two}:{cluster.JOIN_BRICK}" in info),
              check(context, "gv0 is now distributed over both nodes", "Number of Bricks: 2" in info),
              check(context, "gv0 held no disk images, so the hook rebalanced it", held == []),
              check(context, "the hook's rebalance completed", "completed" in rebalance)]
    if not all(checks):
        print(added.stdout[-2000:] + added.stderr[-2000:])
    Step("gnt-instance", "add", "-t", "ext", "--disk", "0:size=64M,provider=gluster", "-o", "e2e-dummy",
         "--no-install", "--no-ip-check", "--no-name-check", "-n", one, "-B", "memory=128",
         "inst4.example.com")
    Step("gnt-instance", "start", "inst4.example.com")
    disk = next(iter(images()))
    for command, target, source in ((("migrate", "-f", "-n", two), two, one),
                                    (("migrate", "-f", "-n", one), one, two),
                                    (("failover", "-f", "-n", two), two, one),
                                    (("failover", "-f", "-n", one), one, two)):
        step = Step("gnt-instance", *command, "inst4.example.com")
        step.check(f"the disk is mapped on {target.split('.')[0]} only", mapped_on(disk) == [target])
        step.check(f"{target.split('.')[0]} holds it open exclusively, {source.split('.')[0]} not at all",
                   open_records("gv0", disk) == {target: "exclusive"})
        step.check("both nodes took part", {n for n, _ in step.calls_by_node} == {one, two})
    gone = Step("gnt-instance", "remove", "-f", "inst4.example.com")
    gone.check("removed; mapped nowhere", images() == {} and mapped_on(disk) == [])


# A process writing sequence-numbered 4 KiB blocks (block N holds N) to a
# disk's loop device, as a VM does, 20 a second; it logs each write as
# issued, then acked or failed, and goes on after a failure.
WRITER = r"""
import mmap, os, sys, time
device, log = sys.argv[1:]
fd = os.open(device, os.O_WRONLY | os.O_DIRECT)
blocks = os.lseek(fd, 0, os.SEEK_END) // 4096
buffer = mmap.mmap(-1, 4096)
with open(log, "a", buffering=1) as out:
    for seq in range(1, blocks):
        buffer[:16] = b"SEQ-" + seq.to_bytes(8, "little") + b"----"
        out.write(f"issued {seq}\n")
        try:
            os.pwrite(fd, buffer, seq * 4096)
            out.write(f"acked {seq}\n")
        except OSError as exc:
            out.write(f"failed {seq} {exc.errno}\n")
        time.sleep(0.05)
"""
GLUSTER_PORTS = "{ 24007, 49152-60999 }"


def partition():
    """Node 2, primary of an instance whose process writes its disk, is cut
    off from the master (node 1) but not from GlusterFS (nftables in its
    network namespace reset every connection to node 1 but GlusterFS's). A
    failover --ignore-consistency to node 1 is refused: node 2's client is
    still connected. Once node 2 is fenced (ganeti-gluster fence), the
    failover succeeds, and nothing node 2 writes after that reaches the image."""
    one, two = cluster.NODE, cluster.NODE2
    instance = "inst8.example.com"
    Step("gnt-instance", "add", "-t", "ext", "--disk", "0:size=64M,provider=gluster,pool=second",
         "-o", "e2e-dummy", "--no-install", "--no-ip-check", "--no-name-check", "-n", two,
         "-B", "memory=128", instance)
    Step("gnt-instance", "start", instance)
    disk = next(iter(images("gv1")))
    log = os.path.join(cluster.STATE, "partition-writer.log")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, loops()[disk], log])
    table = "ganeti_gluster_e2e_partition"
    # New connections either way only to GlusterFS's ports (a source port
    # proves nothing: ephemeral ones overlap the bricks'), and their replies.
    rules = "\n".join([f"add rule inet {table} {chain} ct state established,related accept"
                       for chain in ("out", "in")] +
                      [f"add rule inet {table} {chain} ip {way}addr {{ {cluster.CLUSTER_ADDRESS}, {cluster.ADDRESS} }} {rule}"
                       for chain, way in (("out", "d"), ("in", "s"))
                       for rule in (f"tcp dport {GLUSTER_PORTS} accept", "meta l4proto tcp reject with tcp reset",
                                    "drop")])
    nft = ["nsenter", "-t", str(cluster.anchor2_pid()), "-n", "nft"]
    try:
        wait_for(lambda: _log(log).count("acked") >= 20, 30)
        print("\n$ (node 2 cut off from node 1 but for GlusterFS's ports: nftables in its namespace)")
        cluster.sh(*nft, "-f", "-", input=(
            f"add table inet {table}\n"
            f"add chain inet {table} out {{ type filter hook output priority 0; }}\n"
            f"add chain inet {table} in {{ type filter hook input priority 0; }}\n{rules}\n"))
        context = f"{two} cut off from the master, still connected to GlusterFS"
        check(context, "the master cannot reach node 2's noded",
              not _connects(cluster.inside, cluster.ADDRESS2, 1811))
        check(context, "node 2 still reaches GlusterFS on node 1", _connects(cluster.inside2, cluster.ADDRESS, 24007))
        # What Ganeti asks before a failover --ignore-consistency: node 2 marked offline
        Step("gnt-node", "modify", "--offline=yes", "--force", two)
        refused = Step("gnt-instance", "failover", "-f", "--ignore-consistency", "-n", one, instance,
                       fails=True, answer_yes=True)
        print("    " + "\n    ".join(refused.output.strip().splitlines()[-6:]))
        refused.check("failover is refused: node 2's client is still connected to the volume",
                      f"is open on {two}" in refused.output and "fence" in refused.output)
        refused.check("and the disk is still node 2's", open_records("gv1", disk) == {two: "exclusive"})
        print(f"\n$ ganeti-gluster --pool second fence {two}")
        fenced = cluster.inside("ganeti-gluster", "--pool", "second", "fence", two, check=False)
        issued_before = max(_seqs(_log(log), "issued"), default=0)
        acked_before = _seqs(_log(log), "acked")
        print("    " + (fenced.stdout + fenced.stderr).strip())
        check("fence", f"{two} is fenced off gv1, verified", fenced.returncode == 0
              and f"fenced {two} ({cluster.ADDRESS2})" in fenced.stdout)
        # Ganeti (3.0 and 3.1) made node 1 the primary before it tried the disks: the
        # failover ends with starting the instance there
        moved = cluster.inside("gnt-instance", "list", "--no-headers", "-o", "pnode", instance).stdout.strip()
        check("the refused failover", "Ganeti made node 1 the instance's primary all the same", moved == one)
        started = Step("gnt-instance", "start", instance)
        started.check("the failover completes: node 1 holds the disk, taken over from fenced node 2",
                      open_records("gv1", disk) == {one: "exclusive"})
        time.sleep(3)  # node 2's writer goes on trying
    finally:
        writer.kill()
        writer.wait()
        cluster.sh(*nft, "delete", "table", "inet", table, check=False)
    text = _log(log)
    after = [seq for seq in _seqs(text, "issued") if seq > issued_before]
    failed_after = [seq for seq in _seqs(text, "failed") if seq > issued_before]
    on_image = _image_seqs(image_on_brick("gv1", disk))
    print(f"    node 2's writer: {len(acked_before)} writes acknowledged before the fence returned, "
          f"{len(after)} issued after it, {len(failed_after)} of those failed; the image holds "
          f"{len([s for s in on_image if s > issued_before])} blocks written after the fence")
    context = "node 2 fenced"
    check(context, "node 2 tried to write after the fence", len(after) >= 10)
    check(context, "every write node 2 issued after the fence failed", after and failed_after == after)
    check(context, "none of them reached the image", max(on_image, default=0) <= issued_before)
    check(context, "every write acknowledged before it is on the image", set(acked_before) <= set(on_image))
    print(f"\n$ ganeti-gluster --pool second unfence {two}")
    unfenced = cluster.inside("ganeti-gluster", "--pool", "second", "unfence", two, check=False)
    check("unfence", f"{two} may mount gv1 again", unfenced.returncode == 0)
    Step("gnt-node", "modify", "--offline=no", two, answer_yes=True)
    Step("gnt-instance", "remove", "-f", instance).check("removed", images("gv1") == {})


def _connects(on_node, address, port):
    """Whether a TCP connection from that node to address:port is accepted."""
    probe = f"import socket; socket.create_connection(('{address}', {port}), timeout=5).close()"
    return on_node("python3", "-c", probe, check=False).returncode == 0


def _log(path):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def _seqs(text, word):
    return [int(line.split()[1]) for line in text.splitlines() if line.startswith(word + " ")]


def _image_seqs(path):
    """The sequence numbers the writer's blocks on the image hold."""
    found = []
    with open(path, "rb") as handle:
        block = 0
        while True:
            data = handle.read(4096)
            if not data:
                return found
            if data.startswith(b"SEQ-") and int.from_bytes(data[4:12], "little") == block:
                found.append(block)
            block += 1


SECTOR = 512
MARKER = b"GANETI-GLUSTER-KVM-OK"
PATTERN_LBA = 2048  # where boot.asm writes


def read_sector(device, lba):
    import mmap
    fd = os.open(device, os.O_RDONLY | os.O_DIRECT)
    buffer = mmap.mmap(-1, 4096)
    try:
        os.preadv(fd, [buffer], lba * SECTOR)
    finally:
        os.close(fd)
    return bytes(buffer[:SECTOR])


def write_sectors(device, lba, data):
    import mmap
    buffer = mmap.mmap(-1, 4096)
    buffer.write(data.ljust(4096, b"\0"))
    fd = os.open(device, os.O_WRONLY | os.O_DIRECT)
    try:
        os.pwrite(fd, buffer, lba * SECTOR)
    finally:
        os.close(fd)


def provider(action, *args, check=False, **env):
    """Runs one of the installed provider's scripts on node 1 by hand, as an
    operator does: with `env` as its environment and `args`."""
    return cluster.inside("env", *(f"{key}={value}" for key, value in env.items()),
                          f"/usr/share/ganeti/extstorage/gluster/{action}", *args, check=check)


def attached_device(name):
    return provider("attach", VOL_NAME=name, check=True).stdout.split("\n")[0]


def guest_report(device):
    """What the guest last wrote to LBA 2049 (boot.asm): the capacity its
    first virtio disk shows, in bytes, and how many virtio disks it sees."""
    sector = read_sector(device, PATTERN_LBA + 1)
    if not sector.startswith(b"CAPR"):
        return None, None
    return int.from_bytes(sector[8:16], "little") * SECTOR, int.from_bytes(sector[4:6], "little")


def kvm_guests():
    """A real KVM guest, booted by Ganeti from its gluster disk, writes a known
    sector through the BIOS; we read it back through the provider. Once per
    access path: loop device, and QEMU's gluster driver. On Ganeti 3.1 a
    userspace disk cannot start (its -blockdev flattening, reference §7):
    pinned, so a fixed Ganeti is noticed; with docs/'s patch it boots. And the
    running guest sees a grow and a hot-added and hot-removed disk."""
    if not cluster.kvm_available():
        reason = "KVM GUESTS NOT RUN: /dev/kvm or qemu-system-x86_64 is missing on this machine"
        if os.environ.get("E2E_ALLOW_NO_KVM") == "yes":
            skipped.append(reason)
            print(f"\n!!! e2e: {skipped[-1]} !!!\n")
        else:
            failures.append(reason + " (E2E_ALLOW_NO_KVM=yes makes it a skip)")
        return
    here = os.path.dirname(os.path.abspath(__file__))
    boot = os.path.join(cluster.STATE, "boot.bin")
    cluster.sh("nasm", "-f", "bin", os.path.join(here, "boot.asm"), "-o", boot)
    sector0 = open(boot, "rb").read()
    ganeti31 = cluster.PLATFORM.ganeti == "3.1"
    for access in ("kernelspace", "userspace"):
        instance = f"inst{5 if access == 'kernelspace' else 6}.example.com"
        add = Step("gnt-instance", "add", "-t", "ext", "--disk", f"0:size=16M,provider=gluster,access={access}",
                   "-H", "kvm:boot_order=disk,kernel_path=,initrd_path=,serial_console=false,vnc_bind_address=",
                   "--no-nics", "-o", "e2e-dummy", "--no-install", "--no-ip-check", "--no-name-check",
                   "--no-start", "-n", cluster.NODE, "-B", "memory=64", instance)
        disk = next(n for n, st in images().items() if st.st_size == 16 * MIB)
        device = attached_device(disk)
        write_sectors(device, 0, sector0)
        add.check(f"the boot sector is on the disk ({access})", read_sector(device, 0)[:SECTOR] == sector0)
        if access == "userspace":
            add.check(f"ganeti-gluster check and verify {'warn' if ganeti31 else 'do not warn'} that this Ganeti "
                      "cannot start userspace disks", userspace_warning() == ganeti31)
        if access == "userspace" and ganeti31:
            start = Step("gnt-instance", "start", instance, fails=True)
            start.check("Ganeti 3.1 cannot start a userspace gluster disk: QEMU refuses the server "
                        "list Ganeti writes as a Python repr (Invalid parameter ' 'host'...)",
                        "Invalid parameter" in start.output and "'host'" in start.output)
            print("\n$ (node 1: Ganeti 3.1 with docs/ganeti-3.1-kvm-gluster-userspace.patch, noded restarted)")
            cluster.patch_ganeti_kvm_utils()
        start = Step("gnt-instance", "start", instance)
        start.check(f"the guest wrote its pattern through {access} access, read back through the provider",
                    wait_for(lambda: read_sector(device, PATTERN_LBA) == MARKER + b"\xa5" * (SECTOR - len(MARKER)), 90))
        started = runtime(instance)
        uri = f"gluster://{cluster.ADDRESS}:24007/gv0/ganeti/{disk}"
        if access == "userspace":
            start.check(f"QEMU opened the disk itself as {uri[:32]}...", uri in started)
            if ganeti31:
                start.check("patched Ganeti 3.1 gave QEMU the server as file.server.0.host",
                            f"file.server.0.host={cluster.ADDRESS}" in qemu_command_line(instance))
                start.check("and ganeti-gluster check and verify no longer warn", userspace_warning() is False)
        else:
            start.check("QEMU opened the loop device (instance-disks link), not gluster://",
                        "instance-disks" in started and "gluster://" not in started)
            if ganeti31:
                running_kvm(instance, disk, device)
        Step("gnt-instance", "stop", "--timeout=0", instance)
        Step("gnt-instance", "remove", "-f", instance).check("removed", disk not in images())


def running_kvm(instance, disk, device):
    """Ganeti 3.1 on a running KVM guest: grow-disk tells QEMU (block_resize)
    and the guest's virtio disk shows the new capacity; a disk hot-added
    and hot-removed (hotplug is on by default)."""
    info = Step("gnt-instance", "info", instance)
    info.check("the running guest reports its disk's 16 MiB and one virtio disk",
                wait_for(lambda: guest_report(device) == (16 * MIB, 1), 30))
    grow = Step("gnt-instance", "grow-disk", instance, "0", "16M")
    grow.check("grow called once", grow.calls.count("grow") == 1)
    grow.check("image and loop device are 32 MiB",
               images()[disk].st_size == 32 * MIB and device_size(loops()[disk]) == 32 * MIB)
    grow.check("the running guest sees 32 MiB on its virtio disk (QMP block_resize)",
               wait_for(lambda: guest_report(device)[0] == 32 * MIB, 30))
    before = set(images())
    hot = Step("gnt-instance", "modify", "--disk", "add:size=16M,provider=gluster", instance)
    new = set(images()) - before
    hot.check("hot-add created one 16 MiB image and mapped it",
              len(new) == 1 and images()[next(iter(new))].st_size == 16 * MIB and new <= set(loops()))
    hot.check("the running guest sees a second virtio disk", wait_for(lambda: guest_report(device)[1] == 2, 30))
    hot.check("Ganeti's runtime of the instance holds the hot-added disk", all(n in runtime(instance) for n in new))
    unplug = Step("gnt-instance", "modify", "--disk", "1:remove", instance)
    unplug.check("hot-remove detached and removed the image", set(images()) == before and not new & set(loops()))
    unplug.check("the running guest is down to one virtio disk", wait_for(lambda: guest_report(device)[1] == 1, 30))
    unplug.check("and the runtime no longer", not any(n in runtime(instance) for n in new))


def userspace_warning():
    """Whether ganeti-gluster check and the provider's verify on node 1 warn
    that its Ganeti cannot start KVM instances with userspace disks (None
    when the two disagree)."""
    checked = "ganeti-userspace" in cluster.inside("ganeti-gluster", "check", check=False).stdout
    verified = provider("verify", "ganeti").stdout
    return checked if verified.startswith(f"ganeti: ok: {'warning: ' if checked else ''}") else None


def qemu_command_line(instance):
    """The running QEMU's arguments (Ganeti's runtime file leaves out the disks)."""
    pid = cluster.inside("cat", f"/run/ganeti/kvm-hypervisor/pid/{instance}", check=False).stdout.strip()
    try:
        return open(f"/proc/{int(pid)}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return ""


def point_in_time_snapshots():
    """A KVM guest writes generations (generations.asm) while its disk is
    snapshotted: on Ganeti 3.0 by gnt-backup export --noshutdown, on 3.1
    (whose export fails after the provider's part, ganeti#1839) by the
    snapshot script. The copy must be one instant of the guest's stream; a
    plain copy of the same disk, paced like a big disk, is torn (so the check
    can fail). Both access paths (on 3.1 after kvm_guests patched Ganeti)."""
    import generations

    sector0 = generations.assemble(os.path.join(cluster.STATE, "generations.bin"))
    export = cluster.PLATFORM.ganeti == "3.0"
    for access in ("kernelspace", "userspace"):
        instance = f"gen-{access}.example.com"
        before = set(images())
        Step("gnt-instance", "add", "-t", "ext", "--disk", f"0:size=16M,provider=gluster,access={access}",
             "-H", "kvm:boot_order=disk,kernel_path=,initrd_path=,serial_console=false,vnc_bind_address=",
             "--no-nics", "-o", "e2e-dummy", "--no-install", "--no-ip-check", "--no-name-check",
             "--no-start", "-n", cluster.NODE, "-B", "memory=64", instance)
        disk = next(iter(set(images()) - before))
        device = attached_device(disk)
        write_sectors(device, 0, sector0)
        start = Step("gnt-instance", "start", instance)
        context = f"{access} guest writing generations"
        start.check("the guest writes generations through its disk",
                    wait_for(lambda: (generations.progress(device) or 0) >= 3, 60))
        plain = os.path.join(cluster.STATE, "plain-copy.img")
        took = generations.paced_copy(device, plain, 2.0)
        torn = generations.verdict(generations.read_blocks(plain))
        print(f"    a plain copy of the running disk, read in {took:.1f} s: {torn}")
        check(context, "a plain copy of the running disk is torn", not torn.one_instant)
        first = generations.progress(device)
        if export:
            Step("gnt-backup", "export", "-n", cluster.NODE, "--noshutdown", instance)
            copy = exported_disk(instance)
        else:
            snapshot_name = disk + ".snap"
            print(f"\n$ VOL_NAME={disk[:8]}.. VOL_SNAPSHOT_NAME={disk[:8]}...snap .../gluster/snapshot")
            made = provider("snapshot", VOL_NAME=disk, VOL_SNAPSHOT_NAME=snapshot_name)
            check(context, "snapshot succeeded", made.returncode == 0)
            copy = image_on_brick("gv0", snapshot_name)
        last = generations.progress(device)
        result = generations.verdict(generations.read_blocks(copy)) if copy else None
        print(f"    the guest had completed generation {first} before the copy, {last} after it; the "
              f"{'export' if export else 'snapshot'}: {result}")
        check(context, "the copy is one instant of the guest's stream", result and result.one_instant)
        # a snapshot can take less than a generation: the guest writing all
        # along shows as the next generation completed soon after
        check(context, "and the guest wrote on throughout",
              wait_for(lambda: generations.progress(device) > first, 10))
        if not export:
            provider("remove", VOL_NAME=snapshot_name, check=True)
        Step("gnt-instance", "stop", "--timeout=0", instance)
        Step("gnt-instance", "remove", "-f", instance).check("removed", disk not in images())


def exported_disk(instance):
    """The disk image gnt-backup export wrote for the instance (16 MiB), as
    this machine reaches it in node 1's mount namespace."""
    found = cluster.inside("find", "/var/lib/ganeti/export", "-path", f"*{instance}*", "-type", "f",
                           "-size", "16M", check=False).stdout.split()
    return f"/proc/{cluster.anchor_pid()}/root{found[0]}" if found else None


def runtime(instance):
    """Ganeti's record of a running KVM instance: its command line and devices."""
    return cluster.inside("cat", f"/run/ganeti/kvm-hypervisor/conf/{instance}.runtime", check=False).stdout


def cluster_verify():
    """gnt-cluster verify passes with ext disks (ENODESETUP: this kernel has no
    /proc/sysrq-trigger) and attaches each ext disk on its primary node: 3.1
    as the reference says, and 3.0.2 too (the reference says it calls nothing)."""
    disks = len(images()) + len(images("gv1"))
    verify = Step("gnt-cluster", "verify", "--error-codes", "--ignore-errors=ENODESETUP")
    verify.check(f"verify attached each of the {disks} ext disks, and did nothing else",
                 set(verify.calls) == {"attach"} and len(verify.calls) >= disks)


def main():
    try:
        print(f"e2e: {cluster.PLATFORM.name}: bringing up GlusterFS and a Ganeti {cluster.PLATFORM.ganeti} "
              "cluster in network namespaces", flush=True)
        cluster.up()
        only = os.environ.get("E2E_ONLY")
        if not only:
            scenario()
            spread_snapshot()
        if only in (None, "kvm"):
            kvm_guests()
        elif cluster.PLATFORM.ganeti == "3.1":
            cluster.patch_ganeti_kvm_utils()  # what kvm_guests does half-way: userspace disks start
        if only in (None, "snapshots") and cluster.kvm_available():
            point_in_time_snapshots()
        if only in (None, "partition"):
            two_nodes()
            partition()
        if only in (None, "production"):
            if only:
                cluster.add_node2()
            production.run()
    except Exception:
        traceback.print_exc()
        failures.append("the scenario stopped early")
    finally:
        cluster.down()
    for reason in skipped:
        print(f"\n!!! e2e: {reason} !!!")
    print(f"\ne2e: {cluster.PLATFORM.name} (Ganeti {cluster.PLATFORM.ganeti}): {len(failures)} failures")
    for failure in failures:
        print(f"  - {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
