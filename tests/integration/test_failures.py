"""Failures against the real GlusterFS: clear reasons, nothing lost or left."""

import os
import signal
import subprocess
import time

import pytest

from conftest import MOUNT_BASE, image_path, loop_devices_of, run
from support import fuse_client_pid, held_open


def listing(volume="gv0"):
    path = os.path.join(MOUNT_BASE, volume, "ganeti")
    return sorted(os.listdir(path)) if os.path.isdir(path) else None


def test_missing_volume_is_named_in_the_error(disks):
    result = run("create", {"VOL_NAME": disks.name(), "VOL_SIZE": "8",
                            "EXTP_VOLUME": "nosuchvolume"}, check=False)
    assert "nosuchvolume" in result.stderr and "does not exist" in result.stderr


def test_unreachable_servers_are_named_in_the_error(disks):
    started = time.monotonic()
    result = run("attach", {"VOL_NAME": disks.name(), "EXTP_PORT": "24999",
                            "EXTP_SERVERS": "127.0.0.1,127.0.0.2",
                            "GLUSTER_ALLOWED_SERVERS": "127.0.0.1:24999,127.0.0.2:24999"}, check=False)
    assert "127.0.0.1:24999" in result.stderr and "127.0.0.2:24999" in result.stderr
    assert "refused" in result.stderr
    assert time.monotonic() - started < 60


def test_attach_of_a_missing_disk_fails_loudly(disks):
    result = run("attach", {"VOL_NAME": disks.name()}, check=False)
    assert "does not exist" in result.stderr


@pytest.mark.parametrize("env", [
    {"VOL_NAME": "../escape", "VOL_SIZE": "8"},
    {"VOL_NAME": "a/b", "VOL_SIZE": "8"},
    {"VOL_NAME": ".hidden", "VOL_SIZE": "8"},
    {"VOL_NAME": "x" * 300, "VOL_SIZE": "8"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "0"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "-5"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "1e3"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "99999999999999"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "8", "EXTP_SERVERS": "a,backup-volfile-servers=x"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "8", "EXTP_SERVERS": "host;rm -rf /"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "8", "EXTP_VOLUME": "gv0,log-file=/etc/passwd"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "8", "EXTP_DIR": "../../etc"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "8", "EXTP_MOUNT_BASE": "/"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "8", "EXTP_BOGUS": "1"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "8", "EXTP_PREALLOCATION": "thick"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "8", "EXTP_POOL": "undefined"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "8", "LOGICAL_ID": "gluster://127.0.0.1:24007/gv0/ganeti/x"},
    {"VOL_NAME": "ok.ext.disk0", "VOL_SIZE": "8", "GLUSTER_UNKNOWN": "1"},
    {"LOGICAL_ID": "gluster://127.0.0.1/gv0/ganeti/x"},
    {"LOGICAL_ID": "gluster://127.0.0.1:24007/gv0/../x"},
    {"LOGICAL_ID": "gluster://EXAMPLE.COM:24007/gv0/ganeti/x"},
    {"LOGICAL_ID": "nfs://127.0.0.1:24007/gv0/ganeti/x"},
])
def test_bad_input_fails_with_one_line_and_touches_nothing(env):
    before = listing()
    action = "attach" if "LOGICAL_ID" in env and "VOL_NAME" not in env else "create"
    result = run(action, env, check=False)
    assert result.returncode == 2, result.stderr
    assert listing() == before


def test_config_file_writable_by_others_is_refused(tmp_path, disks):
    config = tmp_path / "gluster.env"
    config.write_text("GLUSTER_SERVERS=127.0.0.1\nGLUSTER_VOLUME=gv0\n")
    config.chmod(0o666)
    result = run("create", {"VOL_NAME": disks.name(), "VOL_SIZE": "8",
                            "GLUSTER_CONFIG": str(config)}, check=False)
    assert "writable" in result.stderr


def test_dead_mount_is_detected_and_replaced(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    mount_point = os.path.join(MOUNT_BASE, "gv0")
    os.kill(fuse_client_pid(mount_point), signal.SIGKILL)
    time.sleep(0.5)
    with pytest.raises(OSError):
        os.stat(image_path(name))
    out = run("attach", {"VOL_NAME": name}, check=True).stdout
    assert out.startswith("/dev/loop")
    assert os.path.exists(image_path(name))


def _kill_client_of_gv0():
    os.kill(fuse_client_pid(os.path.join(MOUNT_BASE, "gv0")), signal.SIGKILL)
    time.sleep(0.5)


def test_dead_mount_with_an_unused_loop_device_is_reattached(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    device = run("attach", {"VOL_NAME": name}, check=True).stdout.split("\n")[0]
    with open(device, "r+b", buffering=0) as handle:
        handle.write(b"survives" * 512)
        os.fsync(handle.fileno())
    _kill_client_of_gv0()
    result = run("attach", {"VOL_NAME": name}, check=True)
    new_device = result.stdout.split("\n")[0]
    assert device in result.stderr and "dead" in result.stderr
    assert loop_devices_of(image_path(name)) == [new_device]
    with open(new_device, "rb") as handle:
        assert handle.read(4096) == b"survives" * 512


def test_dead_mount_with_a_held_loop_device_is_reported_clearly(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    device = run("attach", {"VOL_NAME": name}, check=True).stdout.split("\n")[0]
    with held_open(device) as holder:
        _kill_client_of_gv0()
        result = run("attach", {"VOL_NAME": name}, check=False)
        assert device in result.stderr and name in result.stderr
        assert f"pid {holder.pid}" in result.stderr and "detach" in result.stderr
    # detach works on the dead mount, then everything recovers.
    run("detach", {"VOL_NAME": name}, check=True)
    assert loop_devices_of(image_path(name)) == []
    run("attach", {"VOL_NAME": name}, check=True)


def test_killed_create_leaves_no_disk_under_its_name_and_can_be_rerun(disks):
    name = disks.name()
    env = {"PATH": "/usr/bin:/bin", "GLUSTER_CONFIG": os.environ.get("GLUSTER_CONFIG", ""),
           "VOL_NAME": name, "VOL_SIZE": "2048", "EXTP_PREALLOCATION": "full"}
    from conftest import CONFIG, PROVIDER
    env["GLUSTER_CONFIG"] = CONFIG
    process = subprocess.Popen([os.path.join(PROVIDER, "create")], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = os.path.join(os.path.dirname(image_path(name)), f".{name}.partial")
    deadline = time.monotonic() + 30
    while not os.path.exists(partial) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not os.path.exists(image_path(name))
    run("create", {"VOL_NAME": name, "VOL_SIZE": "16"}, check=True)
    assert os.path.getsize(image_path(name)) == 16 << 20
    assert not os.path.exists(partial)


def test_volume_with_strict_o_direct_off_is_refused_with_the_fix(disks):
    name = disks.name(EXTP_POOL="unsafe")
    env = {"VOL_NAME": name, "EXTP_POOL": "unsafe"}
    run("create", {**env, "VOL_SIZE": "8"}, check=True)
    result = run("attach", env, check=False)
    assert "strict-o-direct" in result.stderr
    assert "gluster volume set gvoff performance.strict-o-direct on" in result.stderr
    assert loop_devices_of(image_path(name, volume="gvoff")) == []


def test_strict_o_direct_off_can_be_allowed_with_a_warning(disks):
    name = disks.name(EXTP_POOL="unsafe")
    env = {"VOL_NAME": name, "EXTP_POOL": "unsafe", "GLUSTER_ALLOW_STRICT_O_DIRECT_OFF": "yes"}
    run("create", {**env, "VOL_SIZE": "8"}, check=True)
    result = run("attach", env, check=True)
    assert result.stdout.startswith("/dev/loop")
    assert "warning" in result.stderr and "strict-o-direct" in result.stderr
