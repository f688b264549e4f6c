"""ganeti-gluster without a server: the volume is a temporary directory and
the gluster CLI a fake that keeps a volume's bricks and peers."""

import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "lib"))

from ganeti_gluster import cli, config_file, images  # noqa: E402
from ganeti_gluster.runner import CommandFailed, Result  # noqa: E402


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A node configuration, and a 'mounted volume' that is a directory."""
    volume = tmp_path / "volume"
    (volume / "ganeti").mkdir(parents=True)
    path = tmp_path / "gluster.env"
    path.write_text(f"GLUSTER_SERVERS=gluster1.example.com\nGLUSTER_VOLUME=vmstore\n"
                    f"GLUSTER_MOUNT_BASE={tmp_path}/mnt\nGLUSTER_CALL_LOG=\n")
    path.chmod(0o600)
    monkeypatch.setattr(config_file, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GLUSTER_CONFIG", str(path))
    monkeypatch.setenv("PATH", os.environ["PATH"])  # main() sets it; restored after the test

    class Mount:
        def acquire(self):
            return str(volume)

        def release(self, unmount_if_unused=False):
            pass

    monkeypatch.setattr(cli.Context, "mount", lambda self: Mount())
    return volume


def outside(tmp_path, name="secret"):
    """A node-local file the volume's symlinks point at."""
    target = tmp_path / name
    target.write_bytes(b"node-local\n")
    return target


def disk(volume, name, metadata=None, size=1 << 20):
    path = str(volume / "ganeti" / name)
    images.create(path, size, "sparse")
    if metadata:
        images.set_metadata(path, metadata)
    return path


def run(capsys, *argv, runner=None):
    code = cli.main(list(argv), runner=runner)
    out, err = capsys.readouterr()
    return code, out, err


def warnings(err):
    return [line for line in err.splitlines() if " warning: " in line]


# -- list, orphans, show, status: nothing the volume says is followed ---------------------

def test_list_skips_a_symlinked_image_with_one_warning_and_never_reads_through_it(node, tmp_path, capsys):
    disk(node, "real.ext.disk0", "originstname+web1.example.com")
    secret = outside(tmp_path)
    images.set_metadata(str(secret), "originstname+stolen.example.com")
    os.symlink(secret, node / "ganeti" / "evil.ext.disk0")
    os.mkfifo(node / "ganeti" / "fifo.ext.disk0")
    code, out, err = run(capsys, "list", "--json")
    assert code == 0
    assert [d["name"] for d in json.loads(out)] == ["real.ext.disk0"]
    assert json.loads(out)[0]["instance"] == "web1.example.com"
    assert len(warnings(err)) == 2
    assert f"{node}/ganeti/evil.ext.disk0 is a symbolic link, not a disk image: skipped" in err
    assert f"{node}/ganeti/fifo.ext.disk0 is a fifo, not a disk image: skipped" in err
    assert "stolen" not in out and secret.read_bytes() == b"node-local\n"
    assert os.listxattr(secret) == [images.METADATA_XATTR]


@pytest.mark.parametrize("command", [["list"], ["orphans", "--instances", "/dev/null"],
                                     ["show", "x.ext.disk0"]])
def test_a_symlinked_image_directory_is_refused_naming_it(node, tmp_path, capsys, command):
    local = tmp_path / "local"
    local.mkdir()
    (local / "x.ext.disk0").write_bytes(b"node-local\n")
    os.rmdir(node / "ganeti")
    os.symlink(local, node / "ganeti")
    code, out, err = run(capsys, *command)
    assert (code, out) == (3, "")
    assert err == (f"ganeti-gluster {command[0]}: error: {node}/ganeti is a symbolic link (to {local}), "
                   "not a directory: refusing to follow it\n")
    assert os.listxattr(local / "x.ext.disk0") == []


def test_each_component_of_the_image_directory_is_checked(node, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GLUSTER_DIR", "a/b/c")
    local = tmp_path / "local"
    (local / "c").mkdir(parents=True)
    (node / "a").mkdir()
    os.symlink(local, node / "a" / "b")
    code, _, err = run(capsys, "list")
    assert code == 3 and f"{node}/a/b is a symbolic link (to {local}), not a directory" in err
    os.unlink(node / "a" / "b")
    (node / "a" / "b").write_text("a file\n")
    code, _, err = run(capsys, "list")
    assert code == 3 and err.endswith(f"{node}/a/b is a regular file, not a directory: refusing to follow it\n")


def test_a_missing_image_directory_means_no_disks(node, capsys, monkeypatch):
    monkeypatch.setenv("GLUSTER_DIR", "not-yet")
    assert run(capsys, "list") == (0, "0 disks on volume vmstore\n", "")


def test_orphans_never_deletes_through_a_symlink(node, tmp_path, capsys):
    secret = outside(tmp_path)
    os.symlink(secret, node / "ganeti" / "evil.ext.disk0")
    code, out, err = run(capsys, "orphans", "--instances", "/dev/null", "--delete", "evil.ext.disk0")
    assert code == 3 and out == ""
    assert "not orphans or .partial leftovers" in err and len(warnings(err)) == 1
    assert os.path.islink(node / "ganeti" / "evil.ext.disk0") and secret.read_bytes() == b"node-local\n"


def test_show_refuses_a_disk_that_is_a_symlink(node, tmp_path, capsys):
    os.symlink(outside(tmp_path), node / "ganeti" / "evil.ext.disk0")
    code, out, err = run(capsys, "show", "evil.ext.disk0")
    assert (code, out) == (3, "")
    assert err == (f"ganeti-gluster show: error: {node}/ganeti/evil.ext.disk0 is a symbolic link, "
                   "not a disk image: not showing it\n")


def test_show_warns_about_a_disk_that_does_not_exist(node, capsys):
    code, out, err = run(capsys, "show", "nosuch.ext.disk0", "--json")
    assert code == 1 and json.loads(out)["uri"].endswith("/vmstore/ganeti/nosuch.ext.disk0")
    assert len(warnings(err)) == 1 and "there is no disk nosuch.ext.disk0 on volume vmstore" in err
    disk(node, "there.ext.disk0")
    code, out, err = run(capsys, "show", "there.ext.disk0")
    assert code == 0 and err == "" and out.startswith("uri:\n  gluster://gluster1.example.com:24007/")


# -- orphans: leftovers of interrupted creates and snapshots ------------------------------

def leftover(volume, name, age):
    path = volume / "ganeti" / f".{name}.partial"
    with open(path, "wb") as handle:
        handle.truncate(3 << 20)
        handle.write(b"x" * 4096)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_orphans_shows_partial_leftovers_with_age_and_size(node, capsys):
    leftover(node, "old.ext.disk0", 7300)
    leftover(node, "new.ext.disk0", 5)
    code, out, _ = run(capsys, "orphans", "--instances", "/dev/null", "--json")
    shown = {p["name"]: p for p in json.loads(out)["partial"]}
    assert set(shown) == {".old.ext.disk0.partial", ".new.ext.disk0.partial"}
    assert shown[".old.ext.disk0.partial"]["size"] == 3 << 20
    assert shown[".old.ext.disk0.partial"]["disk"] == "old.ext.disk0"
    assert 7300 <= shown[".old.ext.disk0.partial"]["age_seconds"] < 7360
    assert json.loads(out)["orphans"] == []
    assert code == 1  # a leftover older than 60 s is left
    code, out, _ = run(capsys, "orphans", "--instances", "/dev/null")
    line = next(l for l in out.splitlines() if l.startswith(".old.ext.disk0.partial"))
    assert line.split()[1:] == ["3.0", "MiB", "4.0", "KiB", "2", "h"]
    assert out.endswith("2 leftover .partial files of 6.0 MiB\n")


def test_orphans_deletes_an_old_leftover_but_not_a_recent_one(node, capsys):
    old, new = leftover(node, "old.ext.disk0", 120), leftover(node, "new.ext.disk0", 5)
    code, out, err = run(capsys, "orphans", "--instances", "/dev/null", "--delete", new.name,
                         "--delete", old.name)
    assert code == 3 and out == "" and old.exists() and new.exists()  # nothing, not even the old one
    assert "create or snapshot may still be making it; left alone" in err
    code, out, _ = run(capsys, "orphans", "--instances", "/dev/null", "--delete", old.name, "--json")
    assert code == 0 and json.loads(out)["deleted"] == [old.name]
    assert not old.exists() and new.exists()


def test_orphans_deletes_no_hidden_file_but_partial_leftovers(node, tmp_path, capsys):
    (node / "ganeti" / ".notes").write_text("x")
    os.symlink(outside(tmp_path), node / "ganeti" / ".evil.ext.disk0.partial")
    old = os.path.getmtime(tmp_path / "secret")
    for name in (".notes", ".evil.ext.disk0.partial"):
        code, _, err = run(capsys, "orphans", "--instances", "/dev/null", "--delete", name)
        assert code == 3 and "left alone: " + name in err
    assert (node / "ganeti" / ".notes").exists() and os.path.islink(node / "ganeti" / ".evil.ext.disk0.partial")
    assert os.path.getmtime(tmp_path / "secret") == old


def test_orphans_of_disks_still_deleted_only_when_named(node, capsys):
    disk(node, "kept.ext.disk0", "originstname+kept.example.com")
    disk(node, "gone.ext.disk0", "originstname+gone.example.com")
    instances = node.parent / "instances"
    instances.write_text("kept.example.com\n")
    code, out, _ = run(capsys, "orphans", "--instances", str(instances), "--json")
    assert code == 1 and [d["name"] for d in json.loads(out)["orphans"]] == ["gone.ext.disk0"]
    code, _, err = run(capsys, "orphans", "--instances", str(instances), "--delete", "kept.ext.disk0")
    assert code == 3 and (node / "ganeti" / "kept.ext.disk0").exists()


# -- join: the queue, and the rebalance ---------------------------------------------------

class FakeGluster:
    """glusterd of a replica-`replica` volume; records every change asked."""

    def __init__(self, bricks, replica=3, peers=(), status="Started"):
        self.bricks, self.replica, self.peers, self.status = list(bricks), replica, set(peers), status
        self.changes, self.fail, self.ignore_add = [], {}, False

    def run(self, args, timeout, check=True):
        words = [a for a in args[1:] if not a.startswith("--")]
        if "--xml" in args:
            return Result(0, self.xml(words), "")
        self.changes.append(words)
        if words[0] in self.fail:
            raise CommandFailed(args, 1, self.fail[words[0]])
        if words[:2] == ["peer", "probe"]:
            self.peers.add(words[2])
        elif words[1] == "add-brick" and not self.ignore_add:
            self.bricks += [w for w in words[3:] if ":" in w]
        return Result(0, "", "")

    def xml(self, words):
        if words[:2] == ["volume", "info"]:
            bricks = "".join(f"<brick><name>{b}</name></brick>" for b in self.bricks)
            return (f"<cliOutput><opRet>0</opRet><volInfo><volumes><volume><name>mr3</name>"
                    f"<statusStr>{self.status}</statusStr><replicaCount>{self.replica}</replicaCount>"
                    f"<bricks>{bricks}</bricks></volume></volumes></volInfo></cliOutput>")
        if words[0] in ("pool", "peer"):
            peers = "".join(f"<peer><hostname>{p}</hostname><connected>1</connected>"
                            f"<stateStr>Peer in Cluster</stateStr></peer>" for p in self.peers)
            return f"<cliOutput><opRet>0</opRet><peerStatus>{peers}</peerStatus></cliOutput>"
        if words[1] == "rebalance":
            return "<cliOutput><opRet>0</opRet><volRebalance><node><statusStr>completed</statusStr></node></volRebalance></cliOutput>"
        raise AssertionError(words)


ORIGINAL = [f"h{i}:/b" for i in (1, 2, 3)]


def join(capsys, gluster, queue, brick, *extra):
    return run(capsys, "join", "--brick", brick, "--queue", str(queue), "--yes", *extra, runner=gluster)


def test_queued_bricks_wait_for_a_whole_replica_set(node, tmp_path, capsys):
    gluster, queue = FakeGluster(ORIGINAL), tmp_path / "queue"
    assert join(capsys, gluster, queue, "h4:/b")[1] == \
        f"queued 1 brick(s) in {queue}; volume is replica 3: waiting for 2 more\n"
    assert join(capsys, gluster, queue, "h5:/b")[0] == 0 and gluster.changes == []
    code, out, _ = join(capsys, gluster, queue, "h6:/b")
    assert code == 0 and queue.read_text() == ""
    assert gluster.bricks == ORIGINAL + ["h4:/b", "h5:/b", "h6:/b"]
    assert out.endswith("joined 3 bricks to vmstore; rebalance completed\n")  # the volume is empty


@pytest.mark.parametrize("failing", ["peer", "volume"])
def test_a_failed_probe_or_add_brick_keeps_the_bricks_queued(node, tmp_path, capsys, failing):
    gluster, queue = FakeGluster(ORIGINAL), tmp_path / "queue"
    queue.write_text("h4:/b\nh5:/b\n")
    gluster.fail[failing] = "volume add-brick: failed: Brick is on the root partition"
    code, out, err = join(capsys, gluster, queue, "h6:/b")
    assert code == 3 and queue.read_text() == "h4:/b\nh5:/b\nh6:/b\n"
    assert err.strip().endswith(f"gluster failed: volume add-brick: failed: Brick is on the root "
                                f"partition; the bricks stay queued in {queue}")
    assert not any(c[:2] == ["volume", "rebalance"] for c in gluster.changes)


def test_bricks_the_volume_does_not_list_after_add_brick_stay_queued(node, tmp_path, capsys):
    gluster, queue = FakeGluster(ORIGINAL), tmp_path / "queue"
    queue.write_text("h4:/b\nh5:/b\n")
    gluster.ignore_add = True
    code, _, err = join(capsys, gluster, queue, "h6:/b")
    assert code == 3 and "does not list h4:/b, h5:/b, h6:/b" in err
    assert queue.read_text() == "h4:/b\nh5:/b\nh6:/b\n"


def test_a_brick_already_in_the_volume_leaves_the_queue(node, tmp_path, capsys):
    gluster, queue = FakeGluster(ORIGINAL + ["h4:/b"]), tmp_path / "queue"
    queue.write_text("h4:/b\nh5:/b\n")
    code, out, _ = join(capsys, gluster, queue, "h6:/b")
    assert code == 0 and queue.read_text() == "h5:/b\nh6:/b\n" and gluster.changes == []
    assert out.startswith("h4:/b is in volume already: dropped from the queue\n")


def test_a_dry_run_changes_neither_the_volume_nor_the_queue(node, tmp_path, capsys):
    gluster, queue = FakeGluster(ORIGINAL), tmp_path / "queue"
    queue.write_text("h4:/b\nh5:/b\n")
    code, out, _ = run(capsys, "join", "--brick", "h6:/b", "--queue", str(queue), runner=gluster)
    assert code == 0 and "dry run" in out and gluster.changes == []
    assert queue.read_text() == "h4:/b\nh5:/b\n"


NEW = ["--brick=h4:/b", "--brick=h5:/b", "--brick=h6:/b"]


def test_join_skips_the_rebalance_of_a_volume_holding_disks(node, capsys):
    disk(node, "vm.ext.disk0")
    gluster = FakeGluster(ORIGINAL)
    code, out, _ = run(capsys, "join", *NEW, "--yes", runner=gluster)
    assert code == 0 and gluster.bricks[3:] == ["h4:/b", "h5:/b", "h6:/b"]
    assert not any(c[:2] == ["volume", "rebalance"] for c in gluster.changes)
    assert ("rebalance skipped: volume vmstore holds disk images in ganeti/ and a rebalance migrates "
            "them under running VMs (GLUSTER_JOIN_REBALANCE=yes or --rebalance allows it), run gluster "
            "volume rebalance vmstore start when convenient\n") in out
    assert out.endswith("joined 3 bricks to vmstore; rebalance skipped\n")


def test_a_partial_file_counts_as_a_disk_for_the_rebalance(node, capsys):
    leftover(node, "being-made.ext.disk0", 1)
    gluster = FakeGluster(ORIGINAL)
    assert "rebalance skipped" in run(capsys, "join", *NEW, "--yes", runner=gluster)[1]
    assert not any(c[:2] == ["volume", "rebalance"] for c in gluster.changes)


@pytest.mark.parametrize("how", [["--rebalance"], "GLUSTER_JOIN_REBALANCE"])
def test_join_rebalances_a_volume_holding_disks_when_told(node, capsys, monkeypatch, how):
    disk(node, "vm.ext.disk0")
    if how == "GLUSTER_JOIN_REBALANCE":
        monkeypatch.setenv("GLUSTER_JOIN_REBALANCE", "yes")
    gluster = FakeGluster(ORIGINAL)
    code, out, _ = run(capsys, "join", *NEW, "--yes", *(how if isinstance(how, list) else []),
                       runner=gluster)
    assert code == 0 and ["volume", "rebalance", "vmstore", "start"] in gluster.changes
    assert "skipped" not in out and out.endswith("rebalance completed\n")


def test_join_never_rebalances_a_stopped_volume_unasked(node, capsys):
    gluster = FakeGluster(ORIGINAL, status="Stopped")
    code, out, _ = run(capsys, "join", *NEW, "--yes", runner=gluster)
    assert code == 0 and "rebalance skipped: volume vmstore is not started" in out
    assert not any(c[:2] == ["volume", "rebalance"] for c in gluster.changes)


def test_join_rebalance_is_a_yes_no_node_setting(node, capsys, monkeypatch):
    monkeypatch.setenv("GLUSTER_JOIN_REBALANCE", "perhaps")
    code, _, err = run(capsys, "join", *NEW, runner=FakeGluster(ORIGINAL))
    assert code == 3 and "GLUSTER_JOIN_REBALANCE" in err


def test_remove_partial_looks_again_as_it_removes(node, tmp_path):
    from ganeti_gluster.cli import imagedir
    from ganeti_gluster.errors import ProviderError

    recent = leftover(node, "new.ext.disk0", 5)
    with pytest.raises(ProviderError, match="written 5 s ago"):
        imagedir.remove_partial(str(node), "ganeti", recent.name, 60)
    os.symlink(outside(tmp_path), node / "ganeti" / ".evil.ext.disk0.partial")
    disk(node, "vm.ext.disk0")
    for name in (".evil.ext.disk0.partial", "vm.ext.disk0"):
        with pytest.raises(ProviderError, match="is not a leftover .partial file"):
            imagedir.remove_partial(str(node), "ganeti", name, 0)
    imagedir.remove_partial(str(node), "ganeti", recent.name, 0)
    assert not recent.exists() and (tmp_path / "secret").exists() and (node / "ganeti" / "vm.ext.disk0").exists()


# -- fence, unfence, release --------------------------------------------------------------

class FakeGlusterd:
    """glusterd of a volume with one brick on 10.0.0.11, the clients connected to it, and its
    auth.reject; a fenced address's clients are dropped unless `drops` is False."""

    def __init__(self, clients=("10.0.0.1", "10.0.0.2"), reject=None, drops=True, hosts=None):
        self.clients, self.reject, self.drops, self.changes = set(clients), reject, drops, []
        self.hosts = hosts or {}  # what getent ahosts answers

    def run(self, args, timeout, check=True):
        if args[0] == "getent":
            address = self.hosts.get(args[-1])
            return Result(0, f"{address}      STREAM {args[-1]}\n" if address else "", "")
        words = [a for a in args[1:] if not a.startswith("--")]
        if "--xml" not in args:
            self.changes.append(words)
            self.reject = words[4] if words[1] == "set" else None
            if self.drops:
                self.clients -= set((self.reject or "").split(","))
            return Result(0, "volume set: success\n", "")
        if words[1] == "info":
            option = (f"<options><option><name>auth.reject</name><value>{self.reject}</value></option>"
                      "</options>" if self.reject else "")
            return Result(0, "<cliOutput><opRet>0</opRet><volInfo><volumes><volume><name>vmstore</name>"
                          "<statusStr>Started</statusStr><bricks><brick><name>10.0.0.11:/b</name></brick>"
                          f"</bricks>{option}</volume></volumes></volInfo></cliOutput>", "")
        clients = "".join(f"<client><hostname>{a}:49152</hostname></client>" for a in sorted(self.clients))
        return Result(0, "<cliOutput><opRet>0</opRet><volStatus><volumes><volume><node><hostname>10.0.0.11"
                      f"</hostname><path>/b</path><status>1</status><clientsStatus>{clients}</clientsStatus>"
                      "</node></volume></volumes></volStatus></cliOutput>", "")


@pytest.fixture
def held(node, monkeypatch):
    """vm.ext.disk0, open exclusively on node2 (10.0.0.2); this node is 10.0.0.1."""
    from ganeti_gluster import open_records, servers

    monkeypatch.setattr(servers, "_connect", lambda host, port, timeout: (None, "10.0.0.1"))
    path = disk(node, "vm.ext.disk0")
    open_records.record(path, "node2", True, "10.0.0.2")
    return path


def test_fence_adds_the_holders_address_to_auth_reject_and_verifies_it(held, capsys):
    glusterd = FakeGlusterd(reject="192.0.2.9")
    code, out, err = run(capsys, "fence", "node2", runner=glusterd)
    assert (code, err) == (0, "")
    assert glusterd.changes == [["volume", "set", "vmstore", "auth.reject", "192.0.2.9,10.0.0.2"]]
    assert out.startswith("fenced node2 (10.0.0.2) off volume vmstore: auth.reject is 192.0.2.9,10.0.0.2; "
                          "verified after ") and out.endswith(
        "none of the 1 online brick(s) lists a client from 10.0.0.2\n")


def test_fence_fails_loudly_when_the_node_stays_connected(held, capsys):
    glusterd = FakeGlusterd(drops=False)
    code, out, err = run(capsys, "fence", "node2", "--timeout", "0.1", runner=glusterd)
    assert code == 3 and out == ""
    assert err == ("ganeti-gluster fence: error: NOT verified that node2 is fenced: auth.reject of volume "
                   "vmstore lists 10.0.0.2, but after 0.1 s 10.0.0.11:/b still list(s) a client from "
                   "10.0.0.2\n")


@pytest.mark.parametrize("address,why", [("10.0.0.1", "is the address this node connects to volume vmstore "
                                          "from: fencing it would cut this node's own clients off"),
                                         ("10.0.0.11", "hosts brick 10.0.0.11:/b of volume vmstore: "
                                          "fencing it would cut that server's own daemons")])
def test_fence_refuses_this_nodes_own_address_and_a_brick_host(held, capsys, address, why):
    glusterd = FakeGlusterd()
    code, out, err = run(capsys, "fence", "node2", "--address", address, runner=glusterd)
    assert code == 3 and out == "" and glusterd.changes == []
    assert err.startswith(f"ganeti-gluster fence: error: not fencing node2: {address} {why}")
    assert err.endswith(" (--force does it anyway)\n") and len(err.splitlines()) == 1
    code, out, err = run(capsys, "fence", "node2", "--address", address, "--force", runner=glusterd)
    assert code == 0 and "warning: fencing node2 although" in err and out.startswith("fenced node2")


def test_fence_needs_an_address_for_a_node_without_records(held, capsys):
    glusterd = FakeGlusterd()
    code, out, err = run(capsys, "fence", "node3", runner=glusterd)
    assert code == 3 and "no open record on volume vmstore names node3 with an address: give it with " \
        "--address" in err and glusterd.changes == []
    assert run(capsys, "fence", "node3", "--address", "not-an-ip", runner=glusterd)[0] == 3


def test_unfence_removes_the_address_and_resets_an_empty_list(held, capsys):
    glusterd = FakeGlusterd(reject="192.0.2.9,10.0.0.2")
    code, out, _ = run(capsys, "unfence", "node2", runner=glusterd)
    assert code == 0 and glusterd.changes == [["volume", "set", "vmstore", "auth.reject", "192.0.2.9"]]
    assert out == ("unfenced node2 (10.0.0.2) on volume vmstore: auth.reject is 192.0.2.9; its clients "
                   "may mount the volume again\n")
    code, out, _ = run(capsys, "unfence", "node9", "--address", "192.0.2.9", runner=glusterd)
    assert code == 0 and glusterd.changes[-1] == ["volume", "reset", "vmstore", "auth.reject"]
    assert "auth.reject is reset" in out
    code, out, _ = run(capsys, "unfence", "node2", runner=glusterd)
    assert code == 0 and out == "node2 (10.0.0.2) is not fenced: auth.reject of volume vmstore does not list it\n"


def test_unfence_finds_a_node_whose_records_were_taken_over_by_its_name(held, capsys):
    from ganeti_gluster import open_records

    open_records.forget(held, "node2")  # another node took the disk over after the fence
    glusterd = FakeGlusterd(reject="192.0.2.9,10.0.0.2", hosts={"node2": "10.0.0.2", "node3": "10.0.0.3"})
    code, out, _ = run(capsys, "unfence", "node2", runner=glusterd)
    assert code == 0 and glusterd.changes == [["volume", "set", "vmstore", "auth.reject", "192.0.2.9"]]
    assert out.startswith("unfenced node2 (10.0.0.2)")
    code, out, err = run(capsys, "unfence", "node3", runner=glusterd)
    assert code == 3 and "resolves to no fenced one: give it with --address" in err


def test_status_shows_fenced_addresses(node, capsys, monkeypatch):
    from ganeti_gluster import health
    from ganeti_gluster.cli import volume

    monkeypatch.setattr(volume, "disks_on_volume", lambda ctx: [])

    class Facts:
        name, started, type, replica_count, bricks = "vmstore", True, "Distribute", 1, []
        heal_entries = split_brain_entries = None
        size_free = size_total = 0
        set_options = {"auth.reject": "10.0.0.2"}

    monkeypatch.setattr(cli.Context, "facts", lambda self: Facts())
    monkeypatch.setattr(cli.Context, "space", lambda self, facts: (1, 2))
    monkeypatch.setattr(health, "findings", lambda *a: [])
    code, out, _ = run(capsys, "status")
    assert "  fenced      10.0.0.2 (auth.reject: refused by every brick)\n" in out


def test_release_clears_another_nodes_record_only_when_confirmed(held, capsys, monkeypatch):
    from ganeti_gluster import open_records

    glusterd = FakeGlusterd()
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    code, out, err = run(capsys, "release", "vm.ext.disk0", runner=glusterd)
    assert code == 3 and out == "" and "not on a terminal (--yes confirms)" in err
    assert list(open_records.read(held)) == ["node2"]

    class Terminal:
        def __init__(self, answer):
            self.answer = answer

        def isatty(self):
            return True

        def readline(self):
            return self.answer

    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    code, _, err = run(capsys, "release", "vm.ext.disk0", runner=glusterd)
    assert code == 3 and "STILL CONNECTED" in err and list(open_records.read(held)) == ["node2"]
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    code, out, err = run(capsys, "release", "vm.ext.disk0", runner=glusterd)
    assert code == 0 and out.startswith("released vm.ext.disk0: cleared node2's open record (exclusive since ")
    assert open_records.read(held) == {}


def test_release_of_several_holders_needs_node(held, capsys):
    from ganeti_gluster import open_records

    open_records.record(held, "node3", False, "10.0.0.3")
    code, out, err = run(capsys, "release", "vm.ext.disk0", "--yes", runner=FakeGlusterd())
    assert code == 3 and "vm.ext.disk0 is open on node2, node3: say which with --node" in err
    code, out, err = run(capsys, "release", "vm.ext.disk0", "--yes", "--node", "node3", runner=FakeGlusterd())
    assert code == 0 and sorted(open_records.read(held)) == ["node2"]
    code, out, err = run(capsys, "release", "vm.ext.disk0", "--yes", "--node", "node3", runner=FakeGlusterd())
    assert code == 3 and "node3 holds no open record of vm.ext.disk0 (holders: node2)" in err
