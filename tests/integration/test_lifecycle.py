"""A disk's whole life in both dialects, with data that must survive it."""

import os
import re
import subprocess
import tempfile

from conftest import (CONFIG, MIB, PROVIDER, image_path, loop_devices_of, run, sha256_of, write_random)

GANETI_31_URI = re.compile(r"^gluster://[a-z0-9.-]+:\d+/[^/]+/.+$")


def attach(env):
    out = run("attach", env, check=True).stdout
    lines = out.split("\n")
    assert lines[-1] == "" and len(lines) == 3, f"attach printed {out!r}"
    return lines[0], lines[1]


def device_size(device):
    return int(subprocess.run(["blockdev", "--getsize64", device], capture_output=True,
                              text=True, check=True).stdout)


def read_through_userspace(uri, length):
    """The first `length` bytes read through QEMU's gluster driver (libgfapi)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "copy.raw")
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", uri, out],
                       check=True, capture_output=True, timeout=120)
        return sha256_of(out, length)


def test_ganeti_dialect_whole_life_keeps_data(disks):
    name = disks.name()
    snap = name + ".snap"
    disks.track(VOL_NAME=snap)
    env = {"VOL_NAME": name, "EXTP_PROVIDER": "gluster", "EXTP_ACCESS": "kernelspace"}

    run("create", {**env, "VOL_SIZE": "64"}, check=True)
    assert os.path.getsize(image_path(name)) == 64 * MIB
    device, uri = attach(env)
    assert uri == f"kvm:gluster://127.0.0.1:24007/gv0/ganeti/{name}"
    assert GANETI_31_URI.match(uri[len("kvm:"):])
    written = write_random(device, 8 * MIB, seed=1)

    run("detach", env, check=True)
    assert loop_devices_of(image_path(name)) == []
    device, _ = attach(env)
    assert sha256_of(device, 8 * MIB) == written

    run("grow", {**env, "VOL_SIZE": "64", "VOL_NEW_SIZE": "96"}, check=True)
    assert device_size(device) == 96 * MIB
    assert os.path.getsize(image_path(name)) == 96 * MIB
    assert sha256_of(device, 8 * MIB) == written

    run("setinfo", {**env, "VOL_METADATA": "originstname+inst1.example.com"}, check=True)
    assert os.getxattr(image_path(name), "user.ganeti-gluster.metadata") == b"originstname+inst1.example.com"

    run("open", {**env, "VOL_OPEN_EXCLUSIVE": "True"}, check=True)
    run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": snap, "VOL_SNAPSHOT_SIZE": "96",
                     "EXTP_PROVIDER": "gluster", "EXTP_ACCESS": "kernelspace"}, check=True)
    snap_device, _ = attach({"VOL_NAME": snap})
    assert snap_device != device
    assert device_size(snap_device) == 96 * MIB
    assert sha256_of(snap_device, 8 * MIB) == written
    run("detach", {"VOL_NAME": snap}, check=True)
    run("remove", {"VOL_NAME": snap}, check=True)
    assert not os.path.exists(image_path(snap))

    with open(device, "r+b", buffering=0) as handle:  # a known pattern for qemu-io -P
        handle.seek(16 * MIB)
        handle.write(b"\xab" * MIB)
        os.fsync(handle.fileno())
    run("close", env, check=True)
    run("detach", env, check=True)
    gluster_uri = uri[len("kvm:"):]
    assert read_through_userspace(gluster_uri, 8 * MIB) == written
    checked = subprocess.run(["qemu-io", "-f", "raw", "-c", "read -P 0xab 16M 1M", gluster_uri],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0 and "read 1048576/1048576 bytes" in checked.stdout, checked
    assert "Pattern verification failed" not in checked.stdout + checked.stderr
    run("remove", env, check=True)
    assert not os.path.exists(image_path(name))


def test_design_dialect_whole_life_keeps_data(disks):
    instance = f"it-{os.getpid()}-{os.urandom(3).hex()}.example.com"
    created = run("create", {"INSTANCE_NAME": instance, "DISK_INDEX": "1", "DISK_SIZE": "32",
                             "INSTANCE_UUID": "8d5a7c1e-0000-4000-8000-000000000001",
                             "INSTANCE_TAGS": ""}, check=True).stdout
    logical_id = created.strip()
    assert created == logical_id + "\n"
    assert logical_id == f"gluster://127.0.0.1:24007/gv0/ganeti/{instance}-disk1"
    disks.track(LOGICAL_ID=logical_id)

    device, uri = attach({"LOGICAL_ID": logical_id})
    assert uri == "kvm:" + logical_id
    written = write_random(device, 4 * MIB, seed=2)

    resized = run("resize", {"LOGICAL_ID": logical_id, "DISK_SIZE": "48"}, check=True).stdout
    assert resized == "48\n"
    assert device_size(device) == 48 * MIB
    run("detach", {"LOGICAL_ID": logical_id}, check=True)

    new_instance = "renamed-" + instance
    renamed = run("rename", {"LOGICAL_ID": logical_id, "NEW_INSTANCE_NAME": new_instance},
                  check=True).stdout
    new_id = renamed.strip()
    assert renamed == new_id + "\n"
    assert new_id == f"gluster://127.0.0.1:24007/gv0/ganeti/{new_instance}-disk1"
    disks.track(LOGICAL_ID=new_id)
    run("attach", {"LOGICAL_ID": logical_id}, check=False)  # the old name is gone

    device, _ = attach({"LOGICAL_ID": new_id})
    assert sha256_of(device, 4 * MIB) == written
    run("detach", {"LOGICAL_ID": new_id}, check=True)
    run("remove", {"LOGICAL_ID": new_id}, check=True)
    assert not os.path.exists(image_path(f"{new_instance}-disk1"))


def test_named_pool_puts_the_disk_on_the_replica_volume(disks):
    name = disks.name(EXTP_POOL="replica")
    env = {"VOL_NAME": name, "EXTP_POOL": "replica"}
    run("create", {**env, "VOL_SIZE": "16"}, check=True)
    assert os.path.exists(image_path(name, volume="gr3"))
    assert not os.path.exists(image_path(name))
    device, uri = attach(env)
    assert uri == f"kvm:gluster://127.0.0.1:24007/gr3/ganeti/{name}"
    written = write_random(device, 2 * MIB, seed=3)
    run("detach", env, check=True)
    device, _ = attach(env)
    assert sha256_of(device, 2 * MIB) == written


def test_design_dialect_pool_variable_picks_the_pool(disks):
    instance = f"pool-{os.urandom(3).hex()}.example.com"
    created = run("create", {"INSTANCE_NAME": instance, "DISK_INDEX": "0", "DISK_SIZE": "8",
                             "POOL": "replica"}, check=True).stdout.strip()
    disks.track(LOGICAL_ID=created)
    assert created == f"gluster://127.0.0.1:24007/gr3/ganeti/{instance}-disk0"


def test_preallocation_modes_allocate_as_asked(disks):
    blocks = {}
    for mode in ("sparse", "falloc", "full"):
        name = disks.name()
        run("create", {"VOL_NAME": name, "VOL_SIZE": "16", "EXTP_PREALLOCATION": mode}, check=True)
        info = os.stat(image_path(name))
        assert info.st_size == 16 * MIB
        assert info.st_mode & 0o777 == 0o600
        blocks[mode] = info.st_blocks * 512
    assert blocks["sparse"] < 1 * MIB
    assert blocks["falloc"] >= 16 * MIB
    assert blocks["full"] >= 16 * MIB


def test_snapshot_keeps_holes(disks):
    name = disks.name()
    snap = name + ".snap"
    disks.track(VOL_NAME=snap)
    run("create", {"VOL_NAME": name, "VOL_SIZE": "256"}, check=True)
    device, _ = attach({"VOL_NAME": name})
    written = write_random(device, 4 * MIB, seed=4)
    run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": snap}, check=True)
    info = os.stat(image_path(snap))
    assert info.st_size == 256 * MIB
    assert info.st_blocks * 512 < 64 * MIB, "holes were filled"
    assert sha256_of(image_path(snap), 4 * MIB) == written
    assert sha256_of(image_path(snap), 256 * MIB) == sha256_of(image_path(name), 256 * MIB)


def _run_with_stderr_on_a_terminal(action, env):
    """Runs a script with stderr on a pseudo-terminal (as an operator at a
    shell has it) and stdout on a pipe; (exit code, stdout, terminal text)."""
    import pty

    controller, terminal = pty.openpty()
    environment = {"PATH": "/usr/bin:/bin", "GLUSTER_CONFIG": CONFIG, **env}
    process = subprocess.Popen([os.path.join(PROVIDER, action)], env=environment,
                               stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the script closed the terminal's last handle
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    out = process.stdout.read().decode()
    return process.wait(timeout=120), out, shown.decode()


def test_long_fills_and_copies_show_progress_on_a_terminal_only(disks):
    name = disks.name()
    code, out, shown = _run_with_stderr_on_a_terminal(
        "create", {"VOL_NAME": name, "VOL_SIZE": "64", "EXTP_PREALLOCATION": "full"})
    assert code == 0 and out == ""
    assert "100%" in shown and shown.count("%") > 1, shown  # the zeros of full preallocation
    device, _ = attach({"VOL_NAME": name})
    write_random(device, 8 * MIB, seed=9)
    on_terminal, in_logs = name + ".tty", name + ".log"
    for snap in (on_terminal, in_logs):
        disks.track(VOL_NAME=snap)
    code, out, shown = _run_with_stderr_on_a_terminal(
        "snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": on_terminal})
    assert code == 0 and out == ""
    assert "copying: 100%" in shown and shown.count("%") > 1, shown
    quiet = run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": in_logs}, check=True)
    assert quiet.stderr == "" and quiet.stdout == ""
