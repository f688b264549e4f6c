"""One test per provider rule of shared/reference/ganeti-extstorage.md §1-§4."""

import os
import re
import stat
import subprocess
import threading

import pytest

from conftest import (MIB, MOUNT_BASE, PROVIDER, assert_one_line_error, image_path, loop_devices_of, run)

REQUIRED = ("create", "attach", "detach", "remove", "grow", "setinfo", "verify")
OPTIONAL = ("open", "close", "snapshot")
DESIGN = ("resize", "rename")


# §1 The provider directory

def test_provider_directory_name_is_valid():
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", os.path.basename(PROVIDER))


@pytest.mark.parametrize("script", REQUIRED + OPTIONAL + DESIGN)
def test_every_script_is_an_owner_executable_file(script):
    info = os.stat(os.path.join(PROVIDER, script))  # follows symlinks, as Ganeti does
    assert stat.S_ISREG(info.st_mode) and info.st_mode & stat.S_IXUSR


def test_parameters_list_is_name_whitespace_description():
    with open(os.path.join(PROVIDER, "parameters.list")) as handle:
        lines = [line.rstrip("\n") for line in handle if line.strip()]
    names = [re.match(r"^(\S+)\s+\S", line).group(1) for line in lines]
    assert {"servers", "port", "volume", "dir", "preallocation", "pool"} <= set(names)


@pytest.mark.parametrize("script", REQUIRED + OPTIONAL + DESIGN)
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_usage(script, flag):
    result = run(script, {}, args=[flag])
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: {script}")


@pytest.mark.parametrize("script", ("create", "attach", "grow"))
def test_wrong_arguments_print_usage_and_fail(script):
    result = run(script, {"VOL_NAME": "x"}, args=["bogus"])
    assert result.returncode != 0 and result.stdout == ""
    assert "usage:" in result.stderr


@pytest.mark.parametrize("script", REQUIRED[:-1] + OPTIONAL + DESIGN)
def test_no_argument_call_without_variables_fails_cleanly(script):
    result = run(script, {})
    assert result.returncode != 0
    assert_one_line_error(result)


def test_runs_from_any_directory_with_any_environment(disks):
    # Ganeti runs scripts with cwd = the provider dir and noded's unclean
    # environment; an operator runs them from anywhere.
    name = disks.name()
    noise = {"PYTHONPATH": "/nonexistent", "PYTHONHOME": "/nonexistent", "LC_ALL": "C",
             "PATH": "/nonexistent", "IFS": ",", "HOME": "/nonexistent"}
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8", **noise}, cwd="/", check=True)
    out = run("attach", {"VOL_NAME": name, **noise}, cwd="/tmp", check=True).stdout
    assert out.startswith("/dev/loop")


def test_writes_nothing_into_its_working_directory(disks, tmp_path):
    # Ganeti runs scripts with cwd = the provider directory, an operator from anywhere.
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, cwd=str(tmp_path), check=True)
    assert list(tmp_path.iterdir()) == []


def test_logs_each_call_in_its_own_call_log(disks, tmp_path):
    # Ganeti logs a script's output itself; the provider also keeps one line
    # per call (GLUSTER_CALL_LOG, by default gluster-calls.log in Ganeti's
    # extstorage log directory) to follow what Ganeti did to a disk.
    log = tmp_path / "gluster-calls.log"
    name = disks.name(GLUSTER_CALL_LOG=str(log))
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8", "GLUSTER_CALL_LOG": str(log)}, check=True)
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    assert " create " in lines[0] and f"VOL_NAME={name} " in lines[0] and "-> exit 0 " in lines[0], lines
    assert stat.S_IMODE(log.stat().st_mode) == 0o640


def test_needs_no_ganeti_log_directory(disks, tmp_path):
    # Without the call log's directory (Ganeti not installed yet, or a node
    # without it) the script works, and makes neither the directory nor the log.
    missing = tmp_path / "extstorage"
    log = missing / "gluster-calls.log"
    name = disks.name(GLUSTER_CALL_LOG=str(log))
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8", "GLUSTER_CALL_LOG": str(log)}, check=True)
    run("attach", {"VOL_NAME": name, "GLUSTER_CALL_LOG": str(log)}, check=True)
    assert not missing.exists()


# §2 Environment per script

def test_ganeti_style_environment_with_uuid_cname_and_params(disks):
    name = disks.name()
    env = {"VOL_NAME": name, "VOL_UUID": "0b6c0b39-1d2f-4d6a-9c3e-0a1b2c3d4e5f",
           "VOL_CNAME": "data", "EXTP_PROVIDER": "gluster", "EXTP_ACCESS": "userspace"}
    run("create", {**env, "VOL_SIZE": "8"}, check=True)
    run("attach", env, check=True)


def test_grow_goes_to_vol_new_size_not_vol_size(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    run("grow", {"VOL_NAME": name, "VOL_SIZE": "8", "VOL_NEW_SIZE": "24"}, check=True)
    assert os.path.getsize(image_path(name)) == 24 * MIB
    # A retried grow (same target) is fine; a smaller target is refused.
    run("grow", {"VOL_NAME": name, "VOL_SIZE": "8", "VOL_NEW_SIZE": "24"}, check=True)
    run("grow", {"VOL_NAME": name, "VOL_SIZE": "24", "VOL_NEW_SIZE": "16"}, check=False)
    assert os.path.getsize(image_path(name)) == 24 * MIB


def test_snap_volumes_are_ordinary_volumes(disks):
    name = disks.name()
    snap = name + ".snap"
    disks.track(VOL_NAME=snap)
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    # snapshot gets no VOL_UUID / VOL_CNAME
    run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": snap, "VOL_SNAPSHOT_SIZE": "8"},
        check=True)
    for action in ("attach", "open", "attach", "detach", "remove"):
        extra = {"VOL_OPEN_EXCLUSIVE": "False"} if action == "open" else {}
        run(action, {"VOL_NAME": snap, **extra}, check=True)
    assert not os.path.exists(image_path(snap))


def test_snapshot_never_replaces_an_existing_disk(disks):
    name = disks.name()
    other = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    run("create", {"VOL_NAME": other, "VOL_SIZE": "4"}, check=True)
    run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": other}, check=False)
    assert os.path.getsize(image_path(other)) == 4 * MIB


# §3 Output and exit codes

def test_attach_stdout_is_exactly_device_then_uri(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    out = run("attach", {"VOL_NAME": name, "GLUSTER_DEBUG": "yes"}, check=True).stdout
    lines = out.split("\n")  # exactly how Ganeti parses it
    assert len(lines) == 3 and lines[2] == ""
    assert stat.S_ISBLK(os.stat(lines[0]).st_mode)
    assert re.match(r"^kvm:gluster://[a-z0-9.-]+:\d+/[^/]+/.+$", lines[1], re.IGNORECASE)


@pytest.mark.parametrize("action,extra", [
    ("create", {"VOL_SIZE": "8"}), ("detach", {}), ("remove", {}), ("grow", {"VOL_NEW_SIZE": "16"}),
    ("setinfo", {"VOL_METADATA": "originstname+x"}), ("open", {"VOL_OPEN_EXCLUSIVE": "True"}),
    ("close", {}),
])
def test_scripts_other_than_attach_print_nothing_on_stdout(disks, action, extra):
    name = disks.name()
    if action != "create":
        run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    result = run(action, {"VOL_NAME": name, "GLUSTER_DEBUG": "yes", **extra}, check=True)
    assert result.stdout == ""


def test_userspace_line_can_be_turned_off(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    out = run("attach", {"VOL_NAME": name, "GLUSTER_USERSPACE": "never"}, check=True).stdout
    assert out.count("\n") == 1 and out.startswith("/dev/loop")


# §4 What happens when

def test_attach_is_idempotent_and_keeps_one_loop_device(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    outs = {run("attach", {"VOL_NAME": name}, check=True).stdout for _ in range(6)}
    assert len(outs) == 1
    assert len(loop_devices_of(image_path(name))) == 1


@pytest.mark.parametrize("note", ["other disk's device", "garbage", "missing device"])
def test_attach_finds_its_device_whatever_its_device_note_says(disks, note):
    """A warm attach looks first at the device noted beside the disk's lock;
    a wrong note must neither be believed nor stop the disk being found."""
    name, other = disks.name(), disks.name()
    devices = {}
    for disk in (name, other):
        run("create", {"VOL_NAME": disk, "VOL_SIZE": "8"}, check=True)
        devices[disk] = run("attach", {"VOL_NAME": disk}, check=True).stdout.split("\n")[0]
    note_file = os.path.join(MOUNT_BASE, ".locks", "disks", "gv0", "ganeti", name + ".device")
    with open(note_file) as handle:
        assert handle.read() == devices[name] + "\n"
    wrong = {"other disk's device": devices[other], "garbage": "../../etc/passwd",
             "missing device": "/dev/loop99999"}[note]
    with open(note_file, "w") as handle:
        handle.write(wrong + "\n")
    assert run("attach", {"VOL_NAME": name}, check=True).stdout.split("\n")[0] == devices[name]
    with open(note_file) as handle:
        assert handle.read() == devices[name] + "\n"
    assert loop_devices_of(image_path(name)) == [devices[name]]


def test_concurrent_attaches_of_one_disk_map_it_once(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    run("detach", {"VOL_NAME": name}, check=True)  # also lets the volume unmount
    results = []
    threads = [threading.Thread(target=lambda: results.append(run("attach", {"VOL_NAME": name})))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert len({r.stdout for r in results}) == 1
    assert len(loop_devices_of(image_path(name))) == 1


def test_detach_and_remove_treat_already_gone_as_success(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    run("attach", {"VOL_NAME": name}, check=True)
    for _ in range(2):
        run("detach", {"VOL_NAME": name}, check=True)
    for _ in range(2):
        run("remove", {"VOL_NAME": name}, check=True)
    run("detach", {"VOL_NAME": name}, check=True)


def test_remove_refuses_while_attached(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    run("attach", {"VOL_NAME": name}, check=True)
    device = loop_devices_of(image_path(name))[0]
    result = run("remove", {"VOL_NAME": name}, check=False)
    assert f"in use on this node (loop device {device})" in result.stderr
    assert os.path.exists(image_path(name))


def test_create_is_idempotent_for_same_size_and_never_overwrites(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    with open(image_path(name), "r+b") as handle:
        handle.write(b"precious")
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    run("create", {"VOL_NAME": name, "VOL_SIZE": "16"}, check=False)
    with open(image_path(name), "rb") as handle:
        assert handle.read(8) == b"precious"
    assert os.path.getsize(image_path(name)) == 8 * MIB


def test_close_without_open_and_repeated_open_are_fine(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    run("close", {"VOL_NAME": name}, check=True)
    for _ in range(3):
        run("open", {"VOL_NAME": name, "VOL_OPEN_EXCLUSIVE": "True"}, check=True)
    run("close", {"VOL_NAME": name}, check=True)
    run("close", {"VOL_NAME": name}, check=True)


def open_records(name):
    path = image_path(name)
    prefix = "user.ganeti-gluster.open."
    return {x[len(prefix):]: os.getxattr(path, x).decode().split()[0]
            for x in os.listxattr(path) if x.startswith(prefix)}


def test_migration_sequence_leaves_the_target_as_exclusive_holder(disks):
    name = disks.name()
    source = {"VOL_NAME": name, "GLUSTER_NODE_NAME": "node1.example.com"}
    target = {"VOL_NAME": name, "GLUSTER_NODE_NAME": "node2.example.com"}
    run("create", {**source, "VOL_SIZE": "8"}, check=True)
    run("open", {**source, "VOL_OPEN_EXCLUSIVE": "True"}, check=True)
    # Ganeti's migrate, as observed on 3.0.2:
    run("close", target, check=True)
    run("open", {**source, "VOL_OPEN_EXCLUSIVE": "False"}, check=True)
    run("open", {**target, "VOL_OPEN_EXCLUSIVE": "False"}, check=True)
    assert open_records(name) == {"node1.example.com": "shared", "node2.example.com": "shared"}
    run("close", source, check=True)
    result = run("open", {**target, "VOL_OPEN_EXCLUSIVE": "True"}, check=True)
    assert "warning" not in result.stderr
    assert open_records(name) == {"node2.example.com": "exclusive"}


def test_exclusive_open_of_a_dead_holder_is_taken_over_with_a_warning(disks):
    name = disks.name()
    alive = {"VOL_NAME": name, "GLUSTER_NODE_NAME": "alive.example.com"}
    run("create", {**alive, "VOL_SIZE": "8"}, check=True)
    # a node that died holding it: no client of its address is connected (test_exclusive.py has
    # the holder that is still connected, on two nodes of their own)
    os.setxattr(image_path(name), "user.ganeti-gluster.open.dead.example.com",
                b"exclusive 2026-01-01T00:00:00Z 192.0.2.99")
    result = run("open", {**alive, "VOL_OPEN_EXCLUSIVE": "True"}, check=True)
    assert "dead.example.com (exclusive since 2026-01-01T00:00:00Z, from 192.0.2.99)" in result.stderr
    assert "taking it over" in result.stderr
    assert open_records(name) == {"alive.example.com": "exclusive"}


def test_exclusive_open_of_a_holder_at_this_nodes_address_is_refused(disks):
    name = disks.name()
    first = {"VOL_NAME": name, "GLUSTER_NODE_NAME": "first.example.com"}
    run("create", {**first, "VOL_SIZE": "8"}, check=True)
    run("open", {**first, "VOL_OPEN_EXCLUSIVE": "True"}, check=True)
    result = run("open", {"VOL_NAME": name, "VOL_OPEN_EXCLUSIVE": "True"}, check=False)
    assert "first.example.com connects from 127.0.0.1 as this node does" in result.stderr
    assert open_records(name) == {"first.example.com": "exclusive"}


def test_strict_open_refuses_a_second_exclusive_holder(disks):
    name = disks.name()
    first = {"VOL_NAME": name, "GLUSTER_NODE_NAME": "first.example.com"}
    second = {"VOL_NAME": name, "GLUSTER_NODE_NAME": "second.example.com",
              "GLUSTER_STRICT_OPEN": "yes"}
    run("create", {**first, "VOL_SIZE": "8"}, check=True)
    run("open", {**first, "VOL_OPEN_EXCLUSIVE": "True"}, check=True)
    result = run("open", {**second, "VOL_OPEN_EXCLUSIVE": "True"}, check=False)
    assert "first.example.com" in result.stderr
    assert open_records(name) == {"first.example.com": "exclusive"}


def test_detach_also_undoes_open(disks):
    name = disks.name(GLUSTER_NODE_NAME="node1.example.com")  # its node detaches it at the end
    env = {"VOL_NAME": name, "GLUSTER_NODE_NAME": "node1.example.com"}
    run("create", {**env, "VOL_SIZE": "8"}, check=True)
    run("attach", env, check=True)
    run("open", {**env, "VOL_OPEN_EXCLUSIVE": "True"}, check=True)
    run("detach", env, check=True)
    run("attach", env, check=True)
    assert open_records(name) == {}


def test_grow_refreshes_the_loop_device_before_returning(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    device = run("attach", {"VOL_NAME": name}, check=True).stdout.split("\n")[0]
    run("grow", {"VOL_NAME": name, "VOL_SIZE": "8", "VOL_NEW_SIZE": "40"}, check=True)
    size = subprocess.run(["blockdev", "--getsize64", device], capture_output=True, text=True,
                          check=True).stdout
    assert int(size) == 40 * MIB


def test_create_failing_for_one_disk_leaves_the_other_removable(disks):
    # Ganeti rolls back disk 0 (attach, detach, remove) when disk 1 fails.
    first = disks.name()
    run("create", {"VOL_NAME": first, "VOL_SIZE": "8"}, check=True)
    run("create", {"VOL_NAME": disks.name(), "VOL_SIZE": "8", "EXTP_VOLUME": "nosuchvolume"},
        check=False)
    for action in ("attach", "detach", "remove"):
        run(action, {"VOL_NAME": first}, check=True)
    assert not os.path.exists(image_path(first))


def test_detach_releases_the_mount_only_when_unused(disks):
    a, b = disks.name(), disks.name()
    for name in (a, b):
        run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
        run("attach", {"VOL_NAME": name}, check=True)
    mount_point = os.path.dirname(os.path.dirname(image_path(a)))
    run("detach", {"VOL_NAME": a}, check=True)
    assert os.path.ismount(mount_point)
    run("detach", {"VOL_NAME": b}, check=True)
    assert not os.path.ismount(mount_point)


def test_keep_mounted_leaves_the_volume_mounted_after_the_last_disk(disks):
    name = disks.name()
    keep = {"VOL_NAME": name, "GLUSTER_KEEP_MOUNTED": "yes"}
    run("create", {**keep, "VOL_SIZE": "8"}, check=True)
    run("attach", keep, check=True)
    mount_point = os.path.dirname(os.path.dirname(image_path(name)))
    run("detach", keep, check=True)
    assert os.path.ismount(mount_point)
    run("remove", keep, check=True)
    assert os.path.ismount(mount_point) and not os.path.exists(image_path(name))
    run("detach", {"VOL_NAME": name}, check=True)  # the default again: released when unused
    assert not os.path.ismount(mount_point)
