"""A hostile volume, a hung client and odd-but-legal input, against the real
GlusterFS: the node's own files stay untouched, every script ends within its
bound, and no disk is lost or leaked."""

import os
import signal
import subprocess
import time

import pytest

from conftest import CONFIG, MOUNT_BASE, PROVIDER, image_path, loop_devices_of
from conftest import run as run_script
from support import fuse_client_pid, held_open

GV0 = os.path.join(MOUNT_BASE, "gv0")
HOSTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "harness",
                     "gluster_hosts.py")


def run(action, env=None, **kwargs):
    """A provider script that leaves the volume mounted, so the test can look at it after a
    refused remove or detach (the disks fixture unmounts it at the end)."""
    return run_script(action, {"GLUSTER_KEEP_MOUNTED": "yes", **(env or {})}, **kwargs)


def node_local_file(tmp_path, content=b"node secret\n" * 100):
    path = tmp_path / "local-secret"
    path.write_bytes(content)
    return path


def assert_untouched(path, content):
    assert path.read_bytes() == content
    assert os.listxattr(path) == []


def config_with(tmp_path, *lines):
    path = tmp_path / "gluster.env"
    path.write_text(open(CONFIG).read() + "".join(line + "\n" for line in lines))
    path.chmod(0o600)
    return str(path)


# -- never follow what the volume says ----------------------------------------------------------

def test_an_image_replaced_by_a_symlink_is_never_followed(disks, tmp_path):
    name = disks.name()
    snap = disks.name(".snap")
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    content = b"node secret\n" * 100
    secret = node_local_file(tmp_path, content)
    os.unlink(image_path(name))
    os.symlink(secret, image_path(name))
    for action, extra in (("grow", {"VOL_NEW_SIZE": "16"}), ("setinfo", {"VOL_METADATA": "x"}),
                          ("snapshot", {"VOL_SNAPSHOT_NAME": snap}), ("attach", {}),
                          ("open", {"VOL_OPEN_EXCLUSIVE": "True"}), ("remove", {})):
        result = run(action, {"VOL_NAME": name, **extra}, check=False)
        assert image_path(name) in result.stderr and "symbolic link" in result.stderr, action
    assert_untouched(secret, content)
    assert not os.path.lexists(image_path(snap))
    assert loop_devices_of(str(secret)) == []
    assert os.path.islink(image_path(name))  # remove did not delete what it did not make
    os.unlink(image_path(name))


def test_a_symlinked_image_directory_is_never_followed(disks, tmp_path):
    local_dir = tmp_path / "local-dir"
    local_dir.mkdir()
    (local_dir / "keep").write_bytes(b"keep")
    run("create", {"VOL_NAME": disks.name(), "VOL_SIZE": "1"}, check=True)  # mounts gv0
    link = os.path.join(GV0, "evil")
    os.symlink(local_dir, link)
    try:
        name = disks.name(EXTP_DIR="evil")
        for action, extra in (("create", {"VOL_SIZE": "8"}), ("attach", {}), ("remove", {})):
            result = run(action, {"VOL_NAME": name, "EXTP_DIR": "evil", **extra}, check=False)
            assert link in result.stderr and "symbolic link" in result.stderr, action
        assert sorted(os.listdir(local_dir)) == ["keep"]
    finally:
        os.unlink(link)


# -- a hung client ------------------------------------------------------------------------------

@pytest.fixture
def stopped_client():
    """Stops the FUSE client of gv0 (as a client stuck on a dead brick looks), and lets it go on
    afterwards whatever happened."""
    stopped = []

    def stop():
        pid = fuse_client_pid(GV0)
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
        return pid

    yield stop
    for pid in stopped:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("action", ["attach", "create", "snapshot"])
def test_a_stopped_client_fails_the_script_within_io_timeout(disks, stopped_client, action):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    run("attach", {"VOL_NAME": name}, check=True)
    env = {"VOL_NAME": name, "GLUSTER_IO_TIMEOUT": "3"}
    if action == "create":
        env["VOL_NAME"] = disks.name()
        env["VOL_SIZE"] = "8"
    if action == "snapshot":
        env["VOL_SNAPSHOT_NAME"] = disks.name(".snap")
    pid = stopped_client()
    started = time.monotonic()
    result = run(action, env, check=False, timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < 3 + 3, f"{action} took {elapsed:.1f} s with io_timeout 3 s"
    assert "did not finish within 3 s" in result.stderr
    assert f"pid {pid} is stopped" in result.stderr
    # and no lock is left held: once the client goes on, the disk works at once
    os.kill(pid, signal.SIGCONT)
    assert run("attach", {"VOL_NAME": name}, check=True, timeout=30).stdout.startswith("/dev/loop")


# -- odd but legal Ganeti input -----------------------------------------------------------------

@pytest.mark.parametrize("cname", ["my-disk#1", "système", "a b\tc", "'; rm -rf /"])
def test_any_disk_name_and_a_parameter_added_later_pass_the_whole_cycle(disks, cname):
    name = disks.name()
    env = {"VOL_NAME": name, "VOL_CNAME": cname, "VOL_UUID": "x#y"}
    run("create", {**env, "VOL_SIZE": "8"}, check=True)
    later = {**env, "EXTP_ADDED_LATER": "1"}
    attached = run("attach", later, check=True)
    assert "added_later" in attached.stderr and "ignored" in attached.stderr
    assert attached.stdout.startswith("/dev/loop")
    for action in ("open", "close"):
        run(action, {**later, "VOL_OPEN_EXCLUSIVE": "False"}, check=True)
    run("detach", later, check=True)
    run("remove", later, check=True)
    assert not os.path.exists(image_path(name))


def test_create_still_refuses_an_unknown_parameter(disks):
    name = disks.name()
    result = run("create", {"VOL_NAME": name, "VOL_SIZE": "8", "EXTP_SIZEE": "1"}, check=False)
    assert "unknown disk parameter 'sizee'" in result.stderr
    assert not os.path.exists(image_path(name))


# -- releasing for real -------------------------------------------------------------------------

def test_detach_fails_while_the_loop_device_is_held_and_remove_refuses(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    device = run("attach", {"VOL_NAME": name}, check=True).stdout.split("\n")[0]
    with held_open(device) as holder:
        result = run("detach", {"VOL_NAME": name}, check=False)
        assert device in result.stderr and f"pid {holder.pid} (sleep)" in result.stderr
        result = run("remove", {"VOL_NAME": name}, check=False)
        assert f"loop device {device}" in result.stderr
        assert os.path.exists(image_path(name))
    run("detach", {"VOL_NAME": name}, check=True)
    assert loop_devices_of(image_path(name)) == []
    run("remove", {"VOL_NAME": name}, check=True)


def test_remove_refuses_while_a_process_has_the_image_open(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    with held_open(image_path(name)) as holder:
        result = run("remove", {"VOL_NAME": name}, check=False)
        assert f"pid {holder.pid} (sleep)" in result.stderr
        assert os.path.exists(image_path(name))
    run("remove", {"VOL_NAME": name}, check=True)


def test_attached_loop_devices_have_direct_io(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    device = run("attach", {"VOL_NAME": name}, check=True).stdout.split("\n")[0]
    assert open(f"/sys/block/{os.path.basename(device)}/loop/dio").read().strip() == "1"


def test_attach_from_another_mount_namespace_reuses_the_loop_device(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    device = run("attach", {"VOL_NAME": name}, check=True).stdout.split("\n")[0]
    # A namespace of its own without this node's mount of gv0: attach mounts a second client.
    script = (f"umount --lazy {GV0} && GLUSTER_CONFIG={CONFIG} VOL_NAME={name} "
              f"{PROVIDER}/attach && grep -c ' {GV0} ' /proc/self/mountinfo")
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == device and lines[-2] == "1"  # its own new mount, the same device
    assert loop_devices_of(image_path(name)) == [device]
    # Another Ganeti node on this kernel (containers, the e2e's namespaces) gets a device of its own.
    other = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            script.replace("GLUSTER_CONFIG=", "GLUSTER_NODE_NAME=other-node GLUSTER_CONFIG=")
                            + f" && VOL_NAME={name} GLUSTER_NODE_NAME=other-node GLUSTER_CONFIG={CONFIG} "
                            f"{PROVIDER}/detach"],
                           capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert other.returncode == 0, other.stderr
    assert other.stdout.split("\n")[0] not in ("", device)
    assert loop_devices_of(image_path(name)) == [device]  # the other node's detach left ours


def test_attach_after_the_mount_was_lazily_unmounted_reuses_the_loop_device(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    device = run("attach", {"VOL_NAME": name}, check=True).stdout.split("\n")[0]
    # The device keeps the old client alive; its backing path is now relative to that mount.
    subprocess.run(["umount", "--lazy", GV0], check=True)
    assert run("attach", {"VOL_NAME": name}, check=True).stdout.split("\n")[0] == device
    backing = open(f"/sys/block/{os.path.basename(device)}/loop/backing_file").read().strip()
    assert backing == f"/ganeti/{name}"
    assert loop_devices_of(image_path(name)) == []  # no second device on the new mount
    run("detach", {"VOL_NAME": name}, check=True)
    assert not os.path.exists(f"/sys/block/{os.path.basename(device)}/loop/backing_file") or \
        open(f"/sys/block/{os.path.basename(device)}/loop/backing_file").read().strip() != backing


# -- crash windows ------------------------------------------------------------------------------

def test_a_rename_cut_short_between_its_steps_finishes_when_run_again(disks):
    old, new = "it-rename-old.example.com-disk0", "it-rename-new.example.com-disk0"
    uri = "gluster://127.0.0.1:24007/gv0/ganeti/"
    disks.track(LOGICAL_ID=uri + old)
    disks.track(LOGICAL_ID=uri + new)
    run("create", {"INSTANCE_NAME": "it-rename-old.example.com", "DISK_INDEX": "0",
                   "DISK_SIZE": "8"}, check=True)
    os.link(image_path(old), image_path(new))  # as if killed after the link, before the unlink
    env = {"LOGICAL_ID": uri + old, "NEW_INSTANCE_NAME": "it-rename-new.example.com"}
    assert run("rename", env, check=True).stdout == uri + new + "\n"
    assert not os.path.exists(image_path(old)) and os.path.exists(image_path(new))
    assert run("rename", env, check=True).stdout == uri + new + "\n"  # and once more: no change


# -- two clusters, one volume name --------------------------------------------------------------

@pytest.fixture(scope="module")
def second_cluster():
    """One GlusterFS host in a network namespace (10.78.0.11) with a volume gv0 of its own."""
    def hosts(*args):
        return subprocess.run(["/usr/bin/python3", HOSTS, *args], check=True, capture_output=True,
                              text=True, timeout=300)
    hosts("up", "1")
    try:
        brick = "/tmp/ganeti-gluster-hosts/host1/brick/gv0"
        hosts("cli", "1", "volume", "create", "gv0", f"10.78.0.11:{brick}", "force")
        hosts("cli", "1", "volume", "set", "gv0", "performance.strict-o-direct", "on")
        hosts("cli", "1", "volume", "start", "gv0")
        yield brick
    finally:
        subprocess.run(["/usr/bin/python3", HOSTS, "down"], capture_output=True, timeout=300)


def test_a_volume_of_the_same_name_on_another_cluster_gets_its_own_mount(disks, tmp_path,
                                                                        second_cluster):
    name = disks.name()
    elsewhere = {"VOL_NAME": name, "EXTP_SERVERS": "10.78.0.11", "EXTP_VOLUME": "gv0"}
    refused = run("create", {**elsewhere, "VOL_SIZE": "8"}, check=False)
    assert "10.78.0.11:24007 is not allowed" in refused.stderr

    config = config_with(tmp_path, "GLUSTER_ALLOWED_SERVERS=127.0.0.1,127.0.0.2,10.78.0.11")
    disks.track(**elsewhere, GLUSTER_CONFIG=config)
    run("create", {"VOL_NAME": disks.name(), "VOL_SIZE": "8"}, check=True)  # gv0 here, mounted
    run("create", {**elsewhere, "VOL_SIZE": "8", "GLUSTER_CONFIG": config}, check=True)
    assert os.path.exists(os.path.join(second_cluster, "ganeti", name))
    assert not os.path.exists(image_path(name))
    device = run("attach", {**elsewhere, "GLUSTER_CONFIG": config}, check=True).stdout.split("\n")[0]
    other_mount = os.path.join(MOUNT_BASE, "gv0@10.78.0.11:24007")
    assert loop_devices_of(os.path.join(other_mount, "ganeti", name)) == [device]
    sources = {line.split()[4]: line.split(" - ")[1].split()[1]
               for line in open("/proc/self/mountinfo") if "fuse.glusterfs" in line}
    assert sources[GV0] == "127.0.0.1:/gv0" and sources[other_mount] == "10.78.0.11:/gv0"
