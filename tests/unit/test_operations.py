"""Every script's decisions, without root: the operations run against a volume
that is a temporary directory and a fake runner standing in for glusterfs,
losetup and umount (tests/unit/fake_node.py). The integration suite shows the
same against the real GlusterFS; these pin down each decision in seconds."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
from fake_node import Node  # noqa: E402

URI = "gluster://gluster1.example.com:24007/vmstore/ganeti/"
DISK = "0a1b.ext.disk0"
MIB = 1 << 20


@pytest.fixture
def node(tmp_path, monkeypatch, capsys):
    return Node(tmp_path, monkeypatch, capsys)


def attached(node, name=DISK):
    return node.ok("attach", VOL_NAME=name).split("\n")[0]


# -- create ---------------------------------------------------------------------------------

def test_create_makes_a_sparse_image_and_prints_nothing(node):
    assert node.ok("create", VOL_NAME=DISK, VOL_SIZE="64") == ""
    info = os.stat(node.image(DISK))
    assert info.st_size == 64 * MIB and info.st_blocks == 0
    assert oct(info.st_mode & 0o777) == "0o600"
    assert node.runner.commands[0][:3] == ["glusterfs", "--process-name", "fuse"]
    assert "--volfile-server=gluster2.example.com" in node.runner.commands[0]


def test_create_is_idempotent_for_the_same_size_and_never_overwrites(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    with open(node.image(DISK), "r+b") as handle:
        handle.write(b"precious")
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    assert "different size" in node.refused("create", VOL_NAME=DISK, VOL_SIZE="16")
    assert open(node.image(DISK), "rb").read(8) == b"precious"


def test_design_dialect_create_prints_the_logical_id(node):
    out = node.ok("create", INSTANCE_NAME="web1.example.com", DISK_INDEX="0", DISK_SIZE="8")
    assert out == URI + "web1.example.com-disk0\n"


def test_create_refuses_unknown_parameters_and_makes_nothing(node):
    assert "unknown disk parameter 'sizee'" in node.refused("create", VOL_NAME=DISK, VOL_SIZE="8",
                                                            EXTP_SIZEE="1")
    assert not os.path.exists(node.image(DISK))


def test_a_disk_may_only_name_allowed_servers(node):
    last = node.refused("create", VOL_NAME=DISK, VOL_SIZE="8", EXTP_SERVERS="evil.example.com")
    assert "evil.example.com:24007 is not allowed" in last
    assert node.runner.commands == []  # no client was started towards it
    assert "gluster1.example.com:2424 is not allowed" in node.refused(
        "attach", VOL_NAME=DISK, EXTP_PORT="2424")


def test_allowed_servers_admit_another_cluster_with_its_own_mount(node):
    with open(node.config, "a") as handle:
        handle.write("GLUSTER_ALLOWED_SERVERS=gluster1.example.com,other.example.com:24008\n")
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8", EXTP_SERVERS="other.example.com", EXTP_PORT="24008")
    assert node.runner.mounts == {node.volume: "gluster1.example.com:/vmstore",
                                  node.volume + "@other.example.com:24008": "other.example.com:/vmstore"}


def test_a_mount_from_another_source_at_the_mount_point_is_refused(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    node.runner.mounts[node.volume] = "intruder.example.com:/vmstore"
    assert "holds a fuse.glusterfs mount of intruder.example.com:/vmstore" in node.refused(
        "attach", VOL_NAME=DISK)


# -- attach and detach ----------------------------------------------------------------------

def test_attach_prints_device_then_uri_and_is_idempotent(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    out = node.ok("attach", VOL_NAME=DISK)
    assert out == f"/dev/loop7\nkvm:{URI}{DISK}\n"
    assert node.ok("attach", VOL_NAME=DISK) == out
    assert [c for c in node.runner.commands if c[:2] == ["losetup", "--find"]] == [
        ["losetup", "--find", "--show", "--direct-io=on", "--sector-size=512", node.image(DISK)]]


def test_attach_without_direct_io_detaches_the_device_and_fails(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    node.runner.direct_io = False
    assert "has no direct I/O" in node.refused("attach", VOL_NAME=DISK)
    assert node.runner.loops == {}


def test_attach_of_a_missing_disk_fails_naming_it(node):
    assert f"disk {DISK} does not exist on volume vmstore" in node.refused("attach", VOL_NAME=DISK)


def test_attach_and_release_accept_any_disk_name_and_a_parameter_added_later(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8", VOL_CNAME="système #1")
    later = {"VOL_NAME": DISK, "VOL_CNAME": "my-disk#1\t", "VOL_UUID": "?", "EXTP_ADDED": "x"}
    code, out, err = node.run("attach", **later)
    assert code == 0 and out.startswith("/dev/loop") and "'added'" in err and "ignored" in err
    for action in ("detach", "remove"):
        assert node.ok(action, **later) == ""
    assert not os.path.exists(node.image(DISK))


def test_detach_unmaps_and_unmounts_and_is_fine_when_not_attached(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    attached(node)
    assert node.ok("detach", VOL_NAME=DISK) == ""
    assert node.runner.loops == {} and node.runner.mounts == {}
    assert node.ok("detach", VOL_NAME=DISK) == ""


def test_detach_fails_while_the_device_is_held_and_remove_refuses(node, monkeypatch):
    from ganeti_gluster import loopdev

    monkeypatch.setattr(loopdev, "DETACH_WAIT_SECONDS", 0.1)
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    device = attached(node)
    node.runner.loops["loop7"].held = True
    assert f"{device} is still in use (pid 4711 (qemu))" in node.refused("detach", VOL_NAME=DISK)
    assert f"loop device {device}" in node.refused("remove", VOL_NAME=DISK)  # marked to go: still in use
    assert os.path.exists(node.image(DISK))


# -- the kernel path's tuning (node settings) -------------------------------------------------

def test_the_client_and_loop_device_get_the_default_tuning(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    attached(node)
    client = node.runner.commands[0]
    assert client[-1] == node.volume
    assert ["--reader-thread-count=1", "--attribute-timeout=1", "--entry-timeout=1",
            "--negative-timeout=0"] == [a for a in client if a.split("=")[0] in (
                "--reader-thread-count", "--attribute-timeout", "--entry-timeout", "--negative-timeout")]
    assert not [a for a in client if a.startswith("--xlator-option")]
    assert "--sector-size=512" in next(c for c in node.runner.commands if c[:2] == ["losetup", "--find"])
    assert node.runner.queue == {}


def test_node_settings_tune_the_client_and_the_loop_device(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path, monkeypatch, capsys, extra_config=(
        "GLUSTER_FUSE_READER_THREADS=2\nGLUSTER_FUSE_ATTRIBUTE_TIMEOUT=0.5\n"
        "GLUSTER_CLIENT_EVENT_THREADS=2\nGLUSTER_CLIENT_IO_THREADS=8\nGLUSTER_LOOP_SECTOR_SIZE=4096\n"
        "GLUSTER_LOOP_QUEUE=scheduler=mq-deadline nr_requests=64\n"))
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    device = attached(node)
    client = node.runner.commands[0]
    assert {"--reader-thread-count=2", "--attribute-timeout=0.5",
            "--xlator-option=vmstore-client-*.event-threads=2",
            "--xlator-option=vmstore-io-threads.thread-count=8"} <= set(client)
    assert "--sector-size=4096" in next(c for c in node.runner.commands if c[:2] == ["losetup", "--find"])
    queue = f"/sys/block/{os.path.basename(device)}/queue"
    assert node.runner.queue == {f"{queue}/scheduler": "mq-deadline", f"{queue}/nr_requests": "64"}


def test_a_queue_setting_the_kernel_refuses_warns_and_the_disk_attaches(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path, monkeypatch, capsys, extra_config="GLUSTER_LOOP_QUEUE=scheduler=bfq\n")
    node.runner.refused_queue["scheduler"] = "Invalid argument"
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    code, out, err = node.run("attach", VOL_NAME=DISK)
    assert code == 0 and out.startswith("/dev/loop7\n")
    assert "cannot set scheduler of /dev/loop7 to bfq: Invalid argument; going on without it" in err


@pytest.mark.parametrize("parameter", ["fuse_reader_threads", "client_io_threads", "loop_sector_size",
                                       "loop_queue", "fuse_attribute_timeout"])
def test_the_kernel_path_tuning_is_never_a_disk_parameter(node, parameter):
    assert f"unknown disk parameter {parameter!r}" in node.refused(
        "create", VOL_NAME=DISK, VOL_SIZE="8", **{f"EXTP_{parameter.upper()}": "2"})


# -- remove, grow, rename -------------------------------------------------------------------

def test_remove_refuses_while_attached_and_treats_gone_as_success(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    attached(node)
    assert "in use on this node (loop device /dev/loop7)" in node.refused("remove", VOL_NAME=DISK)
    node.ok("detach", VOL_NAME=DISK)
    assert node.ok("remove", VOL_NAME=DISK) == ""
    assert not os.path.exists(node.image(DISK))
    assert node.ok("remove", VOL_NAME=DISK) == ""


def test_grow_goes_to_exactly_the_new_size_refreshes_the_device_and_never_shrinks(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    device = attached(node)
    assert node.ok("grow", VOL_NAME=DISK, VOL_SIZE="8", VOL_NEW_SIZE="24") == ""
    assert os.path.getsize(node.image(DISK)) == 24 * MIB
    assert ["losetup", "--set-capacity", device] in node.runner.commands
    assert "refusing to shrink" in node.refused("grow", VOL_NAME=DISK, VOL_NEW_SIZE="16")
    assert os.path.getsize(node.image(DISK)) == 24 * MIB


def test_design_resize_prints_the_new_size(node):
    uri = node.ok("create", INSTANCE_NAME="web1.example.com", DISK_INDEX="0", DISK_SIZE="8").strip()
    assert node.ok("resize", LOGICAL_ID=uri, DISK_SIZE="16") == "16\n"


def test_design_rename_prints_the_new_id_and_finishes_a_rename_cut_short(node):
    uri = node.ok("create", INSTANCE_NAME="web1.example.com", DISK_INDEX="0", DISK_SIZE="8").strip()
    old, new = node.image("web1.example.com-disk0"), node.image("www1.example.com-disk0")
    os.link(old, new)  # killed between the link and the unlink
    assert node.ok("rename", LOGICAL_ID=uri, NEW_INSTANCE_NAME="www1.example.com") == \
        URI + "www1.example.com-disk0\n"
    assert not os.path.exists(old) and os.path.exists(new)
    assert node.ok("rename", LOGICAL_ID=uri, NEW_INSTANCE_NAME="www1.example.com") == \
        URI + "www1.example.com-disk0\n"


def test_rename_never_replaces_another_disk(node):
    uri = node.ok("create", INSTANCE_NAME="web1.example.com", DISK_INDEX="0", DISK_SIZE="8").strip()
    node.ok("create", INSTANCE_NAME="www1.example.com", DISK_INDEX="0", DISK_SIZE="16")
    assert "already exists" in node.refused("rename", LOGICAL_ID=uri, NEW_INSTANCE_NAME="www1.example.com")
    assert os.path.getsize(node.image("www1.example.com-disk0")) == 16 * MIB


# -- the volume is untrusted ----------------------------------------------------------------

@pytest.mark.parametrize("action,extra", [("attach", {}), ("grow", {"VOL_NEW_SIZE": "16"}),
                                          ("setinfo", {"VOL_METADATA": "x"}), ("remove", {}),
                                          ("snapshot", {"VOL_SNAPSHOT_NAME": DISK + ".snap"}),
                                          ("open", {"VOL_OPEN_EXCLUSIVE": "True"})])
def test_an_image_that_is_a_symlink_is_refused_and_its_target_untouched(node, tmp_path, action, extra):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    secret = tmp_path / "secret"
    secret.write_bytes(b"key")
    os.unlink(node.image(DISK))
    os.symlink(secret, node.image(DISK))
    assert f"{node.image(DISK)} is a symbolic link" in node.refused(action, VOL_NAME=DISK, **extra)
    assert secret.read_bytes() == b"key" and os.listxattr(secret) == []
    assert os.path.islink(node.image(DISK)) and node.runner.loops == {}


def test_a_symlinked_image_directory_is_refused(node, tmp_path):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    os.symlink(tmp_path, os.path.join(node.volume, "elsewhere"))
    last = node.refused("create", VOL_NAME="x.ext.disk0", VOL_SIZE="8", EXTP_DIR="elsewhere")
    assert "elsewhere is a symbolic link" in last
    assert not os.path.exists(tmp_path / "x.ext.disk0")


def test_a_volume_that_can_lose_writes_is_refused_for_attach(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    option = os.path.join(node.volume, ".meta", "graphs", "active", "vmstore-write-behind", "options")
    os.makedirs(option)
    with open(os.path.join(option, "strict-O_DIRECT"), "w") as handle:
        handle.write("off\n")
    assert "performance.strict-o-direct off" in node.refused("attach", VOL_NAME=DISK)


# -- open, close, setinfo, snapshot ---------------------------------------------------------

def records(node):
    from ganeti_gluster import open_records

    return {n: (r.mode, r.address) for n, r in open_records.read(node.image(DISK)).items()}


def held_by_node2(node, exclusive=True, address="10.0.0.2", connected=True):
    """The disk, with node2's open record; node2's client connected to the volume or not."""
    from ganeti_gluster import open_records

    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    open_records.record(node.image(DISK), "node2", exclusive, address)
    if connected:
        node.runner.clients["10.0.0.2"] = ["gluster1.example.com:/b"]
    node.runner.clients["10.0.0.1"] = ["gluster1.example.com:/b"]  # ours, from the mount
    return records(node)


def one_refusal(node, exclusive="True", **env):
    """A refused open: one line on stderr, non-zero exit, nothing printed, and returns it."""
    code, out, err = node.run("open", VOL_NAME=DISK, VOL_OPEN_EXCLUSIVE=exclusive, **env)
    assert code == 1 and out == "" and len(err.splitlines()) == 1, (code, out, err)
    assert err.startswith("gluster open: error: disk 0a1b.ext.disk0 is open on node2 (")
    return err


def test_open_records_this_nodes_address_and_close_forgets_it(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    node.ok("open", VOL_NAME=DISK, VOL_OPEN_EXCLUSIVE="True")
    assert records(node) == {"node1": ("exclusive", "10.0.0.1")}
    assert not any(c[0] == "gluster" for c in node.runner.commands)  # nothing to ask glusterd
    node.ok("close", VOL_NAME=DISK)
    assert records(node) == {}


def test_an_exclusive_open_is_refused_while_the_holders_client_is_connected(node):
    before = held_by_node2(node)
    err = one_refusal(node)
    assert "node2 (exclusive since 20" in err and "from 10.0.0.2)" in err
    assert "node2's client at 10.0.0.2 is connected to 1 brick(s) of volume vmstore" in err
    assert "`ganeti-gluster fence node2 --volume vmstore`" in err
    assert "`ganeti-gluster release 0a1b.ext.disk0 --node node2 --volume vmstore`" in err
    assert records(node) == before
    assert ["gluster", "--remote-host=gluster1.example.com", "--mode=script", "--timeout=30", "volume",
            "status", "vmstore", "clients", "--xml"] in node.runner.commands


def test_a_disconnected_holder_is_taken_over_with_one_warning(node):
    held_by_node2(node, connected=False)
    code, out, err = node.run("open", VOL_NAME=DISK, VOL_OPEN_EXCLUSIVE="True")
    assert code == 0 and out == "" and len(err.splitlines()) == 1
    assert " warning: disk 0a1b.ext.disk0 was open on node2 (exclusive since " in err
    assert "from 10.0.0.2), and no client of it is connected to volume vmstore any more: taking it over" in err
    assert records(node) == {"node1": ("exclusive", "10.0.0.1")}


def test_a_shared_open_refuses_only_a_connected_exclusive_holder(node):
    held_by_node2(node, exclusive=False)
    node.ok("open", VOL_NAME=DISK, VOL_OPEN_EXCLUSIVE="False")  # a migration's two shared opens
    assert records(node) == {"node1": ("shared", "10.0.0.1"), "node2": ("shared", "10.0.0.2")}
    from ganeti_gluster import open_records

    open_records.record(node.image(DISK), "node2", True, "10.0.0.2")
    assert "exclusive since" in one_refusal(node, exclusive="False")


def test_migration_source_shared_target_shared_source_close_target_exclusive(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    source = {"GLUSTER_NODE_NAME": "node2"}
    node.runner.clients = {"10.0.0.1": ["gluster1.example.com:/b"]}  # both nodes' clients connected
    node.runner.local_address = "10.0.0.2"
    node.ok("open", VOL_NAME=DISK, VOL_OPEN_EXCLUSIVE="True", **source)      # running on node2
    node.ok("open", VOL_NAME=DISK, VOL_OPEN_EXCLUSIVE="False", **source)     # migrate: source
    node.runner.local_address = "10.0.0.1"
    node.ok("open", VOL_NAME=DISK, VOL_OPEN_EXCLUSIVE="False")               # target
    assert records(node) == {"node1": ("shared", "10.0.0.1"), "node2": ("shared", "10.0.0.2")}
    node.ok("close", VOL_NAME=DISK, **source)                                # source
    code, _, err = node.run("open", VOL_NAME=DISK, VOL_OPEN_EXCLUSIVE="True")  # target
    assert code == 0 and err == ""
    assert records(node) == {"node1": ("exclusive", "10.0.0.1")}


def test_strict_open_never_takes_over_even_from_a_disconnected_holder(node):
    before = held_by_node2(node, connected=False)
    err = one_refusal(node, exclusive="False", GLUSTER_STRICT_OPEN="yes")
    assert "GLUSTER_STRICT_OPEN=yes never takes over" in err and "ganeti-gluster fence node2" in err
    assert records(node) == before


def test_an_open_is_refused_when_glusterd_cannot_be_asked(node):
    before = held_by_node2(node, connected=False)
    node.runner.fail["gluster"] = "Connection failed. Please check if gluster daemon is operational."
    err = one_refusal(node)
    assert "cannot ask glusterd whether it is still connected" in err and "cannot prove it gone" in err
    assert "gluster daemon is operational" in err
    assert records(node) == before


def test_an_old_record_without_an_address_falls_back_to_the_node_name(node):
    before = held_by_node2(node, address=None, connected=False)
    assert "no address recorded, and the name does not resolve" in one_refusal(node)
    assert records(node) == before
    node.runner.hosts["node2"] = "10.0.0.2"
    assert ["getent", "ahosts", "node2"] in node.runner.commands
    node.runner.clients["10.0.0.2"] = ["gluster1.example.com:/b"]
    assert "node2's client at 10.0.0.2 is connected" in one_refusal(node)
    del node.runner.clients["10.0.0.2"]
    node.ok("open", VOL_NAME=DISK, VOL_OPEN_EXCLUSIVE="True")
    assert records(node) == {"node1": ("exclusive", "10.0.0.1")}


def test_a_holder_at_this_nodes_own_address_is_never_taken_over(node):
    held_by_node2(node, address="10.0.0.1", connected=False)
    assert "node2 connects from 10.0.0.1 as this node does" in one_refusal(node)


def test_a_pool_disk_names_its_pool_in_the_way_out(node):
    from ganeti_gluster import open_records

    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8", EXTP_POOL="fast")
    open_records.record(node.image(DISK, "ssd"), "node2", True, "10.0.0.2")
    node.runner.clients["10.0.0.2"] = ["gluster1.example.com:/b"]
    code, _, err = node.run("open", VOL_NAME=DISK, VOL_OPEN_EXCLUSIVE="True", EXTP_POOL="fast")
    assert code == 1 and "`ganeti-gluster --pool fast fence node2`" in err


def test_setinfo_stores_the_metadata_with_the_image(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="8")
    node.ok("setinfo", VOL_NAME=DISK, VOL_METADATA="originstname+web1.example.com")
    assert os.getxattr(node.image(DISK), "user.ganeti-gluster.metadata") == b"originstname+web1.example.com"


def test_snapshot_keeps_holes_and_never_replaces_a_disk(node):
    node.ok("create", VOL_NAME=DISK, VOL_SIZE="64")
    with open(node.image(DISK), "r+b") as handle:
        handle.seek(32 * MIB)
        handle.write(b"data" * 1024)
    snap = DISK + ".snap"
    assert node.ok("snapshot", VOL_NAME=DISK, VOL_SNAPSHOT_NAME=snap) == ""
    assert open(node.image(snap), "rb").read() == open(node.image(DISK), "rb").read()
    assert os.stat(node.image(snap)).st_blocks * 512 < MIB
    assert "already exists" in node.refused("snapshot", VOL_NAME=DISK, VOL_SNAPSHOT_NAME=snap)


def test_verify_config_names_what_it_uses(node):
    code, out, err = node.run("verify", args=["config"])
    assert code == 0 and out == ("config: ok: servers gluster1.example.com,gluster2.example.com port 24007 "
                          "volume vmstore dir ganeti preallocation sparse\n")
    assert "unknown check 'nonsense'" in node.refused("verify", args=["nonsense"])
