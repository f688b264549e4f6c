"""Exclusive opens that hold, and fencing, against the real GlusterFS.

Two Ganeti "nodes" on this machine: node-a in the root namespaces (its
GlusterFS clients connect from the bridge's 10.78.0.1) and node-b, whose
scripts run in a network namespace of its own with 10.78.0.50 on the same
bridge (nsenter --net only: its FUSE mounts are visible here, its clients
connect from 10.78.0.50). The volume mr3 lives on a GlusterFS host in a
namespace of its own (tests/harness/gluster_hosts.py, 10.78.0.11).
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import PROVIDER, ROOT

HOSTS = os.path.join(ROOT, "tests", "harness", "gluster_hosts.py")
CLI = os.path.join(ROOT, "bin", "ganeti-gluster")
STATE = "/tmp/ganeti-gluster-exclusive"
NAMESPACE, VETH, NODE_B_ADDRESS = "gfnode50", "gfn50", "10.78.0.50"
NODE_A_ADDRESS, SERVER = "10.78.0.1", "10.78.0.11"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
MIB = 1 << 20


def sh(*args, check=True, timeout=120):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    assert not check or result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
    return result


def host_cli(*args):
    return sh("/usr/bin/python3", HOSTS, "cli", "1", *args).stdout


def unmount_under(prefix):
    """Unmounts every mount under prefix (made by this test's nodes): their clients exit."""
    points = [line.split()[4] for line in open("/proc/self/mountinfo")
              if line.split()[4].startswith(prefix + "/")]
    for point in sorted(points, key=len, reverse=True):
        if sh("umount", point, check=False).returncode != 0:
            sh("umount", "--lazy", point, check=False)


class Node:
    """A Ganeti node's provider scripts and ganeti-gluster, in the root namespaces or node-b's."""

    def __init__(self, name, netns=None):
        self.name, self.netns = name, netns
        self.mount_base = os.path.join(STATE, name)
        self.config = os.path.join(STATE, f"{name}.env")
        pid = open("/tmp/ganeti-gluster-hosts/host1/glusterd.pid").read().strip()
        with open(os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(f"GLUSTER_SERVERS={SERVER}\nGLUSTER_VOLUME=mr3\nGLUSTER_MOUNT_BASE={self.mount_base}\n"
                         f"GLUSTER_NODE_NAME={name}\nGLUSTER_KEEP_MOUNTED=yes\nGLUSTER_CALL_LOG=\n"
                         f"GLUSTER_COMMAND_TIMEOUT=20\nGLUSTER_IO_TIMEOUT=20\n"
                         # ganeti-gluster fence changes the volume through host 1's glusterd
                         f"GLUSTER_GLUSTERD_SOCKET=/proc/{pid}/root/run/glusterd.socket\n")

    def _run(self, argv, env=None, stdin=subprocess.DEVNULL):
        prefix = ["nsenter", f"--net=/run/netns/{self.netns}", "--"] if self.netns else []
        return subprocess.run(prefix + argv, capture_output=True, text=True, timeout=180, stdin=stdin,
                              env={"PATH": PATH, "GLUSTER_CONFIG": self.config, **(env or {})})

    def script(self, action, disk, ok=True, **env):
        result = self._run([os.path.join(PROVIDER, action)], {"VOL_NAME": disk, **env})
        if ok is not None:
            assert (result.returncode == 0) == ok, f"{self.name} {action}: {result.stderr}"
        return result

    def open(self, disk, exclusive, ok=True):
        return self.script("open", disk, ok, VOL_OPEN_EXCLUSIVE=str(bool(exclusive)))

    def cli(self, *args, stdin=subprocess.DEVNULL):
        return self._run([CLI, *args], stdin=stdin)

    def image(self, disk):
        return os.path.join(self.mount_base, "mr3", "ganeti", disk)


@pytest.fixture(scope="module")
def nodes():
    """The GlusterFS host, node-b's namespace; all of it gone afterwards, however the tests ended."""
    sh("/usr/bin/python3", HOSTS, "up", "1", timeout=300)
    try:
        os.makedirs(STATE, mode=0o700, exist_ok=True)
        sh("ip", "netns", "add", NAMESPACE)
        sh("ip", "link", "add", f"{VETH}o", "type", "veth", "peer", "name", f"{VETH}i")
        sh("ip", "link", "set", f"{VETH}i", "netns", NAMESPACE)
        sh("ip", "link", "set", f"{VETH}o", "master", "gfbr0", "up")
        sh("ip", "-n", NAMESPACE, "link", "set", "lo", "up")
        sh("ip", "-n", NAMESPACE, "addr", "add", f"{NODE_B_ADDRESS}/24", "dev", f"{VETH}i")
        sh("ip", "-n", NAMESPACE, "link", "set", f"{VETH}i", "up")
        yield Node("node-a"), Node("node-b", NAMESPACE)
    finally:
        unmount_under(STATE)
        sh("ip", "netns", "delete", NAMESPACE, check=False)
        sh("ip", "link", "delete", f"{VETH}o", check=False)
        sh("/usr/bin/python3", HOSTS, "down", check=False, timeout=300)
        shutil.rmtree(STATE, ignore_errors=True)


@pytest.fixture
def disk(nodes):
    """A fresh disk made by node-a; afterwards no mount of either node, no disk, no auth.reject."""
    a, _ = nodes
    name = f"ex-{os.urandom(6).hex()}.ext.disk0"
    a.script("create", name, VOL_SIZE="64")
    yield name
    unmount_under(STATE)
    host_cli("volume", "reset", "mr3", "auth.reject")
    a.script("remove", name, ok=None)


def clients_from(address):
    out = host_cli("volume", "status", "mr3", "clients")
    return [line for line in out.splitlines() if line.startswith(address + ":")]


def last_line(result):
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ""


# -- open ----------------------------------------------------------------------------------

def test_an_exclusive_open_is_refused_while_the_holder_is_connected_and_taken_over_once_it_is_gone(
        nodes, disk):
    a, b = nodes
    a.open(disk, True)
    assert clients_from(NODE_A_ADDRESS), "node-a's client should be connected"
    refused = b.open(disk, True, ok=False)
    assert refused.stdout == "" and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    line = last_line(refused)
    assert line.startswith(f"gluster open: error: disk {disk} is open on node-a (exclusive since 20")
    assert f"from {NODE_A_ADDRESS}); node-a's client at {NODE_A_ADDRESS} is connected to 1 brick(s) of " \
        "volume mr3: refusing a second writer" in line
    assert "`ganeti-gluster fence node-a --volume mr3`" in line
    assert f"`ganeti-gluster release {disk} --node node-a --volume mr3`" in line
    assert b.open(disk, False, ok=False).stderr.count("refusing a second writer") == 1  # shared too

    unmount_under(a.mount_base)  # node-a dies: its client is gone
    deadline = time.monotonic() + 20
    while clients_from(NODE_A_ADDRESS) and time.monotonic() < deadline:
        time.sleep(0.5)
    taken = b.open(disk, True)
    warnings = [line for line in taken.stderr.splitlines() if " warning: " in line]
    assert len(warnings) == 1 and f"disk {disk} was open on node-a (exclusive since " in warnings[0]
    assert "no client of it is connected to volume mr3 any more: taking it over" in warnings[0]
    assert os.getxattr(b.image(disk), "user.ganeti-gluster.open.node-b").decode().startswith("exclusive ")
    assert os.getxattr(b.image(disk), "user.ganeti-gluster.open.node-b").decode().endswith(NODE_B_ADDRESS)
    assert "user.ganeti-gluster.open.node-a" not in os.listxattr(b.image(disk))


def test_migration_shared_shared_close_exclusive_works_with_both_nodes_connected(nodes, disk):
    a, b = nodes
    a.open(disk, True)                   # the instance runs on node-a
    a.open(disk, False)                  # migrate: source
    b.open(disk, False)                  # target
    a.script("close", disk)              # source
    done = b.open(disk, True)            # target
    assert " warning: " not in done.stderr and " error: " not in done.stderr
    assert clients_from(NODE_A_ADDRESS) and clients_from(NODE_B_ADDRESS)
    assert "node-b's client at 10.78.0.50 is connected" in last_line(a.open(disk, True, ok=False))


def test_strict_open_never_takes_over(nodes, disk):
    a, b = nodes
    b.open(disk, True)
    unmount_under(b.mount_base)
    refused = a.script("open", disk, ok=False, VOL_OPEN_EXCLUSIVE="True", GLUSTER_STRICT_OPEN="yes")
    assert "GLUSTER_STRICT_OPEN=yes never takes over" in last_line(refused)


# -- release -------------------------------------------------------------------------------

def test_release_clears_another_nodes_record_only_with_yes_off_a_terminal(nodes, disk):
    a, b = nodes
    b.open(disk, True)
    refused = a.cli("release", disk, "--volume", "mr3")
    assert refused.returncode == 3 and refused.stdout == ""
    assert last_line(refused) == (f"ganeti-gluster release: error: not clearing node-b's open record of {disk} "
                                  "without confirmation: not on a terminal (--yes confirms)")
    assert "user.ganeti-gluster.open.node-b" in os.listxattr(b.image(disk))
    done = a.cli("release", disk, "--volume", "mr3", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"released {disk}: cleared node-b's open record (exclusive since ")
    assert "user.ganeti-gluster.open.node-b" not in os.listxattr(b.image(disk))
    a.open(disk, True)  # nothing stands against it now


# -- fence ---------------------------------------------------------------------------------

WRITER = r"""
import mmap, os, sys, time
path, mode, size, log, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
fd = os.open(path, os.O_WRONLY | os.O_DIRECT | (os.O_APPEND if mode == "append" else 0))
buffer = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT needs
out = open(log, "w", buffering=1)
seq = 0
while not os.path.exists(stop) and seq < 2000:
    buffer.seek(0)
    buffer.write((b"SEQ%08d" % seq) * (size // 11) + b"#" * (size % 11))
    out.write(f"issue {seq} {time.monotonic():.6f}\n")
    try:
        os.write(fd, buffer) if mode == "append" else os.pwrite(fd, buffer, seq * size)
        out.write(f"ok {seq}\n")
    except OSError as exc:
        out.write(f"err {seq} {exc.errno}\n")
    seq += 1
    time.sleep(0.02 if size < 65536 else 0.05)
"""


def read_log(path):
    issued, outcome = {}, {}
    for line in open(path):
        word, seq, *rest = line.split()
        if word == "issue":
            issued[int(seq)] = float(rest[0])
        else:
            outcome[int(seq)] = word if word == "ok" else f"errno {rest[0]}"
    return issued, outcome


PIECE = 4096


def pieces_in(path, size):
    """[(offset, seq)] of every 4 KiB piece of the file that a writer wrote (seq from the first
    whole marker in it; None for a piece that holds none), zeros left out."""
    found = []
    with open(path, "rb") as handle:
        data = handle.read()
    for offset in range(0, len(data), PIECE):
        piece = data[offset:offset + PIECE]
        if piece.strip(b"\0") == b"":
            continue
        at = piece.find(b"SEQ")
        digits = piece[at + 3:at + 11] if at >= 0 else b""
        found.append((offset, int(digits) if len(digits) == 8 and digits.isdigit() else None))
    return found


def runs(pieces):
    """The pieces as runs 'seq x count @offset', for the report."""
    shown, last = [], None
    for offset, seq in pieces:
        if last and last[0] == seq:
            last[1] += 1
        else:
            last = [seq, 1, offset]
            shown.append(last)
    return " ".join(f"{seq}x{count}@{offset}" for seq, count, offset in shown)


def test_fence_cuts_the_node_off_and_nothing_it_writes_afterwards_reaches_the_disk(nodes, disk, tmp_path):
    a, b = nodes
    b.open(disk, True)
    patterns = [("append", 4096), ("append", MIB), ("overwrite", 4096), ("overwrite", MIB)]
    files = {}
    for mode, size in patterns:  # one image each, made and held open on node-b's mount
        name = f"{disk}.{mode}{size}"
        files[mode, size] = b.image(name)
        fd = os.open(files[mode, size], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(fd, 2000 * size if mode == "overwrite" else 0)
        os.close(fd)
    stop = tmp_path / "stop"
    writers = {key: subprocess.Popen(["/usr/bin/python3", "-c", WRITER, path, key[0], str(key[1]),
                                      str(tmp_path / f"{key[0]}{key[1]}.log"), str(stop)])
               for key, path in files.items()}
    reader = os.path.join(STATE, "reader")  # node-a's view of the volume
    try:
        time.sleep(2)  # every writer well under way
        assert all(w.poll() is None for w in writers.values())
        fence = a.cli("fence", "node-b", "--volume", "mr3")
        fenced_at = time.monotonic()
        assert fence.returncode == 0, fence.stderr
        assert fence.stdout.startswith(f"fenced node-b ({NODE_B_ADDRESS}) off volume mr3: auth.reject is "
                                       f"{NODE_B_ADDRESS}; verified after ")
        assert fence.stdout.endswith(f"none of the 1 online brick(s) lists a client from {NODE_B_ADDRESS}\n")
        assert not clients_from(NODE_B_ADDRESS)
        time.sleep(2)  # the writers go on writing after fence returned
    finally:
        stop.touch()
        for writer in writers.values():
            try:
                writer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                writer.kill()
                writer.wait()
    os.makedirs(reader, exist_ok=True)
    sh("glusterfs", f"--volfile-server={SERVER}", "--volfile-id=mr3", reader)
    report = []
    for (mode, size), path in files.items():
        issued, outcome = read_log(tmp_path / f"{mode}{size}.log")
        after = sorted(s for s, t in issued.items() if t > fenced_at)
        before = sorted(s for s, t in issued.items() if t <= fenced_at)
        pieces = pieces_in(os.path.join(reader, "ganeti", os.path.basename(path)), size)
        found = {}
        for offset, seq in pieces:
            found[seq] = found.get(seq, 0) + 1
        acknowledged = [s for s in before if outcome.get(s) == "ok"]
        report.append(f"{mode} {size} B: issued {len(before)} before fence returned "
                      f"({len(acknowledged)} acknowledged), {len(after)} after "
                      f"(outcomes {sorted(set(outcome.get(s, 'none') for s in after))}); "
                      f"on the volume: {runs(pieces)[-400:]}")
        assert after, f"{mode} {size}: the writer issued nothing after fence returned"
        assert all(outcome.get(s, "").startswith("errno") for s in after), report[-1]
        assert not [s for s in after if s in found], report[-1]
        assert None not in found, report[-1]
        # what was acknowledged before is there in full (strict-o-direct), an overwrite in place
        assert all(found.get(s) == size // PIECE for s in acknowledged), report[-1]
        if mode == "overwrite":
            assert all(offset // size == seq for offset, seq in pieces), report[-1]
    print("\n".join(report))
    sys.stdout.flush()

    # node-b's client shut down; once unfenced it mounts and writes again
    unmount_under(b.mount_base)
    unfence = a.cli("unfence", "node-b", "--volume", "mr3")
    assert unfence.returncode == 0 and unfence.stdout == (
        f"unfenced node-b ({NODE_B_ADDRESS}) on volume mr3: auth.reject is reset; its clients may mount "
        "the volume again\n"), unfence.stderr
    b.open(disk, True)
    assert clients_from(NODE_B_ADDRESS)
    fd = os.open(b.image(disk), os.O_WRONLY)
    os.pwrite(fd, b"after unfence", 0)
    os.fsync(fd)
    os.close(fd)
    with open(os.path.join(reader, "ganeti", disk), "rb") as handle:
        assert handle.read(13) == b"after unfence"
    for path in files.values():
        os.unlink(os.path.join(reader, "ganeti", os.path.basename(path)))


def test_fence_refuses_a_brick_host_and_this_nodes_own_address(nodes, disk):
    a, _ = nodes
    for address, why in ((SERVER, f"hosts brick {SERVER}:"), (NODE_A_ADDRESS, "this node connects")):
        refused = a.cli("fence", "node-x", "--address", address, "--volume", "mr3")
        assert refused.returncode == 3 and why in last_line(refused), refused.stderr
        assert "auth.reject" not in host_cli("volume", "info", "mr3")
