"""snapshot of a disk in use: through the backup job of a running QEMU that
uses it (the four ways Ganeti 3.0 and 3.1 give QEMU a disk), refused for a
writer the provider cannot coordinate with, fuzzy only when the node says so.

The QEMUs here run no operating system (the disk holds no boot sector, the
BIOS finds nothing to boot): the copy's mechanics are checked here;
that the copy is one instant of a guest writing meanwhile is proven by the
e2e (a KVM guest writing generations during gnt-backup export)."""

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import MIB, assert_one_line_error, image_path, run, sha256_of, write_random
from support import held_open

SERVER = "127.0.0.2"


def attach(env):
    result = run("attach", env, check=True)
    return result.stdout.splitlines()[0]


def drive_arguments(form, device_link, name):
    """QEMU's disk arguments as Ganeti builds them (see the reference page)."""
    uri = f"gluster://{SERVER}:24007/gv0/ganeti/{name}"
    if form == "3.0 kernelspace":
        return ["-drive", f"file={device_link},format=raw,if=none,id=hotdisk-0,aio=threads,cache=none",
                "-device", "virtio-blk-pci,drive=hotdisk-0"]
    if form == "3.0 userspace":
        return ["-drive", f"file={uri},format=raw,if=none,id=hotdisk-0,cache=none",
                "-device", "virtio-blk-pci,drive=hotdisk-0"]
    if form == "3.1 kernelspace":
        node = {"driver": "raw", "node-name": "disk-0", "file": {
            "driver": "host_device", "filename": device_link, "aio": "threads", "cache": {"direct": True}}}
    else:  # 3.1 userspace, as a fixed Ganeti 3.1 writes it
        node = {"driver": "raw", "node-name": "disk-0", "file": {
            "driver": "gluster", "volume": "gv0", "path": f"ganeti/{name}",
            "server": [{"type": "inet", "host": SERVER, "port": "24007"}]}}
    return ["-blockdev", json.dumps(node), "-device", "virtio-blk-pci,drive=disk-0"]


class Qemu:
    """A running QEMU that holds the disk (QEMU closes a descriptor given
    back with remove-fd only while the VM runs), with a
    QMP socket as Ganeti gives one (<instance>.qmp)."""

    def __init__(self, tmp_path, form, device, name):
        link = tmp_path / "instance-disk:0"  # Ganeti's instance-disks link
        if not link.exists():
            link.symlink_to(device)
        self.qmp = str(tmp_path / "instance1.example.com.qmp")
        self.process = subprocess.Popen(
            ["qemu-system-x86_64", "-nodefaults", "-display", "none", "-machine", "pc",
             "-m", "64", "-qmp", f"unix:{self.qmp},server=on,wait=off",
             *drive_arguments(form, str(link), name)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.qmp):
            assert self.process.poll() is None, self.process.stderr.read().decode()
            assert time.monotonic() < deadline, "QEMU made no QMP socket"
            time.sleep(0.1)

    def ask(self, command):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(self.qmp)
            reader = sock.makefile("rb")
            reader.readline()
            for message in ({"execute": "qmp_capabilities"}, {"execute": command}):
                sock.sendall(json.dumps(message).encode() + b"\n")
                while True:
                    reply = json.loads(reader.readline())
                    if "return" in reply or "error" in reply:
                        break
            return reply["return"]

    def stop(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture
def qemus():
    started = []
    yield started
    for qemu in started:
        os.kill(qemu.process.pid, signal.SIGCONT)
        qemu.stop()


def disk_with_data(disks):
    """A 64 MiB disk holding 4 MiB of data at its start, 60 MiB of holes."""
    name = disks.name()
    disks.track(VOL_NAME=name + ".snap")
    run("create", {"VOL_NAME": name, "VOL_SIZE": "64"}, check=True)
    device = attach({"VOL_NAME": name})
    write_random(device, 4 * MIB, seed=15)
    return name, device


@pytest.mark.parametrize("form", ["3.0 kernelspace", "3.0 userspace", "3.1 kernelspace", "3.1 userspace"])
def test_a_disk_a_running_qemu_uses_is_copied_by_its_backup_job(disks, qemus, tmp_path, form):
    name, device = disk_with_data(disks)
    qemu = Qemu(tmp_path, form, device, name)
    qemus.append(qemu)
    snap = name + ".snap"
    result = run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": snap, "GLUSTER_DEBUG": "yes"},
                 check=True)
    assert result.stdout == ""
    assert f"copying through QEMU pid {qemu.process.pid}'s backup job" in result.stderr
    assert sha256_of(image_path(snap), 64 * MIB) == sha256_of(image_path(name), 64 * MIB)
    assert os.stat(image_path(snap)).st_blocks * 512 <= 8 * MIB, "the holes were filled"
    assert not [n for n in os.listdir(os.path.dirname(image_path(snap))) if n.startswith(".")
                and name in n], "a partial file was left"
    # QEMU keeps nothing of the job: no job, no descriptor, no target node
    assert qemu.ask("query-jobs") == [] and qemu.ask("query-fdsets") == []
    assert not [n for n in qemu.ask("query-named-block-nodes") if "snapshot" in n.get("node-name", "")]


def test_a_writer_that_is_not_qemu_is_refused_unless_fuzzy_copies_are_allowed(disks):
    name, device = disk_with_data(disks)
    snap = name + ".snap"
    with held_open(device) as holder:
        refused = run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": snap}, check=False)
        assert f"pid {holder.pid} (sleep)" in refused.stderr and "GLUSTER_FUZZY_SNAPSHOTS" in refused.stderr
        assert not os.path.exists(image_path(snap))
        fuzzy = run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": snap,
                                 "GLUSTER_FUZZY_SNAPSHOTS": "yes"}, check=True)
        assert "fuzzy copy" in fuzzy.stderr and f"pid {holder.pid} (sleep)" in fuzzy.stderr
    assert sha256_of(image_path(snap), 64 * MIB) == sha256_of(image_path(name), 64 * MIB)


def test_a_disk_open_on_another_node_is_refused(disks):
    name, _ = disk_with_data(disks)
    run("open", {"VOL_NAME": name, "VOL_OPEN_EXCLUSIVE": "True", "GLUSTER_NODE_NAME": "node9.example.com"},
        check=True)
    refused = run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": name + ".snap"}, check=False)
    assert "node node9.example.com (open exclusive since" in refused.stderr
    run("close", {"VOL_NAME": name, "GLUSTER_NODE_NAME": "node9.example.com"}, check=True)
    run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": name + ".snap"}, check=True)


def test_a_qemu_whose_monitor_does_not_answer_fails_within_the_bound(disks, qemus, tmp_path):
    name, device = disk_with_data(disks)
    qemu = Qemu(tmp_path, "3.0 kernelspace", device, name)
    qemus.append(qemu)
    os.kill(qemu.process.pid, signal.SIGSTOP)
    started = time.monotonic()
    refused = run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": name + ".snap",
                               "GLUSTER_IO_TIMEOUT": "3"}, check=False)
    assert time.monotonic() - started < 20
    assert f"QEMU pid {qemu.process.pid}" in refused.stderr and "does not answer" in refused.stderr
    assert not os.path.exists(image_path(name + ".snap"))
    assert_one_line_error(refused)
