"""ganeti-gluster against the real local GlusterFS (and GlusterFS hosts in
network namespaces for join)."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import CONFIG, MOUNT_BASE, ROOT, image_path, run
from support import fuse_client_pid

CLI = os.path.join(ROOT, "bin", "ganeti-gluster")
HARNESS = os.path.join(ROOT, "tests", "harness", "local_gluster.py")
HOSTS = os.path.join(ROOT, "tests", "harness", "gluster_hosts.py")


def cli(*args, stdin=None, env=None, config=CONFIG):
    environment = {"PATH": "/usr/bin:/bin", "GLUSTER_CONFIG": config, **(env or {})}
    return subprocess.run([CLI, *args], capture_output=True, text=True, input=stdin,
                          env=environment, timeout=300)


def gluster(*args):
    return subprocess.run(["/usr/bin/python3", HARNESS, "cli", *args], capture_output=True,
                          text=True, timeout=120, check=True).stdout


@pytest.fixture(scope="module")
def mistuned():
    """A replica-3 volume left at GlusterFS's defaults, plus remote-dio on."""
    bricks = os.path.join(os.path.dirname(CONFIG), "bricks")
    if "mistuned" not in gluster("volume", "list").split():
        gluster("volume", "create", "mistuned", "replica", "3",
                *(f"127.0.0.2:{bricks}/mistuned-{i}" for i in (1, 2, 3)), "force")
    gluster("volume", "reset", "mistuned", "all")
    gluster("volume", "set", "mistuned", "network.remote-dio", "enable")
    gluster("volume", "start", "mistuned", "force")
    yield "mistuned"
    gluster("volume", "stop", "mistuned")
    gluster("volume", "delete", "mistuned")


@pytest.mark.parametrize("flag", [[], ["check"], ["tune"], ["list"], ["orphans"], ["status"],
                                  ["join"], ["show"]])
def test_every_subcommand_has_help(flag):
    result = cli(*flag, "--help")
    assert result.returncode == 0 and "usage: ganeti-gluster" in result.stdout


def test_check_passes_a_volume_tuned_for_vms():
    result = cli("--pool", "replica", "check", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["worst"] == "ok", report
    checks = {f["check"] for f in report["findings"]}
    assert {"started", "bricks", "layout", "strict-o-direct", "remote-dio", "sharding",
            "ping-timeout", "heal", "split-brain", "space"} <= checks


def test_check_fails_a_volume_that_can_lose_writes():
    result = cli("check", "gvoff", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 2 and report["worst"] == "error"
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert [f["check"] for f in errors] == ["strict-o-direct"]
    assert errors[0]["fix"] == "gluster volume set gvoff performance.strict-o-direct on"


def test_check_warns_about_an_unreplicated_volume():
    result = cli("check", "gv0")
    assert result.returncode == 1
    assert "WARNING  layout: Distribute volume without replication" in result.stdout


def test_check_and_tune_fix_a_mistuned_volume(mistuned):
    before = cli("check", mistuned, "--json")
    found = {f["check"]: f for f in json.loads(before.stdout)["findings"]}
    assert before.returncode == 2  # strict-o-direct off
    assert found["remote-dio"]["severity"] == "warning"
    assert found["ping-timeout"]["severity"] == "warning"
    assert found["sharding"]["severity"] == "warning"
    assert "option cluster.eager-lock" not in found  # on (default) is what virt calls enable
    assert found["option cluster.shd-max-threads"]["severity"] == "warning"

    plan = cli("tune", mistuned)
    assert plan.returncode == 0 and "dry run" in plan.stdout
    assert f"gluster volume set {mistuned} performance.strict-o-direct on" in plan.stdout
    assert f"gluster volume set {mistuned} network.remote-dio disable" in plan.stdout
    assert "features.shard" not in plan.stdout  # never switched on a volume that may hold data
    info = gluster("volume", "info", mistuned)
    assert "performance.strict-o-direct" not in info  # a dry run changes nothing

    applied = cli("tune", mistuned, "--apply")
    assert applied.returncode == 0, applied.stderr
    after = json.loads(cli("check", mistuned, "--json").stdout)
    remaining = {f["check"] for f in after["findings"] if f["severity"] != "ok"}
    assert remaining == {"sharding"}, after
    assert json.loads(cli("tune", mistuned, "--json").stdout) == []


def test_list_shows_disks_with_instance_open_holder_and_snapshots(disks):
    name = disks.name()
    disks.track(VOL_NAME=name + ".snap")
    run("create", {"VOL_NAME": name, "VOL_SIZE": "16"}, check=True)
    run("setinfo", {"VOL_NAME": name, "VOL_METADATA": "originstname+web1.example.com"}, check=True)
    run("open", {"VOL_NAME": name, "VOL_OPEN_EXCLUSIVE": "True",
                 "GLUSTER_NODE_NAME": "node1.example.com"}, check=True)
    run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": name + ".snap",
                     "GLUSTER_NODE_NAME": "node1.example.com"}, check=True)
    device = run("attach", {"VOL_NAME": name}, check=True).stdout.split("\n")[0]

    listed = {d["name"]: d for d in json.loads(cli("list", "--json").stdout)}
    disk = listed[name]
    assert disk["size"] == 16 << 20 and disk["instance"] == "web1.example.com"
    assert disk["open"] == {"node1.example.com": "exclusive"}
    assert disk["snapshots"] == [name + ".snap"] and disk["device"] == device
    table = cli("list").stdout
    line = next(l for l in table.splitlines() if l.startswith(name + " "))
    assert "16.0 MiB" in line and "web1.example.com" in line and device in line


def test_orphans_lists_unowned_disks_and_deletes_only_those_named(disks):
    owned, orphan, other = disks.name(), disks.name(), disks.name()
    for name, instance in ((owned, "kept.example.com"), (orphan, "gone.example.com"),
                           (other, "gone2.example.com")):
        run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
        run("setinfo", {"VOL_NAME": name, "VOL_METADATA": f"originstname+{instance}"}, check=True)
    listing = cli("orphans", "--instances", "-", "--json", stdin="kept.example.com\n")
    names = {d["name"] for d in json.loads(listing.stdout)["orphans"]}
    assert orphan in names and other in names and owned not in names
    assert listing.returncode == 1  # orphans left

    refused = cli("orphans", "--instances", "-", "--delete", owned, stdin="kept.example.com\n")
    assert refused.returncode == 3 and owned in on_volume()
    deleted = cli("orphans", "--instances", "-", "--delete", orphan, "--json",
                  stdin="kept.example.com\n")
    assert json.loads(deleted.stdout)["deleted"] == [orphan]
    assert orphan not in on_volume()
    assert {other, owned} <= on_volume()


def on_volume():
    return {d["name"] for d in json.loads(cli("list", "--json").stdout)}


def test_status_and_prometheus_textfile(tmp_path, disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    run("attach", {"VOL_NAME": name}, check=True)
    textfile = tmp_path / "gluster.prom"
    result = cli("--pool", "replica", "status", "--json", "--prometheus", str(textfile))
    status = json.loads(result.stdout)
    assert status["volume"] == "gr3" and status["bricks_up"] == status["bricks_total"] == 3
    assert status["heal_entries"] == 0 and status["split_brain_entries"] == 0
    assert 0 < status["bytes_free"] <= status["bytes_total"]
    metrics = textfile.read_text()
    assert 'ganeti_gluster_bricks_up{volume="gr3"} 3' in metrics
    assert 'ganeti_gluster_split_brain_entries{volume="gr3"} 0' in metrics
    assert "# TYPE ganeti_gluster_bytes_free gauge" in metrics
    plain = cli("status")
    assert "bricks      1/1 up" in plain.stdout and "gv0" in plain.stdout
    assert json.loads(cli("status", "--json").stdout)["disks_attached_here"] >= 1


def test_show_gives_uri_qemu_and_libvirt_forms_with_every_server(disks):
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    result = cli("show", name, "--json")
    assert result.returncode == 0 and result.stderr == ""
    shown = json.loads(result.stdout)
    assert shown["uri"] == f"gluster://127.0.0.1:24007/gv0/ganeti/{name}"
    absent = cli("show", "web1.ext.disk0", "--json")
    assert absent.returncode == 1 and "there is no disk web1.ext.disk0 on volume gv0" in absent.stderr
    shown = json.loads(absent.stdout)
    assert shown["uri"] == "gluster://127.0.0.1:24007/gv0/ganeti/web1.ext.disk0"
    assert "file.server.1.host=127.0.0.2" in shown["qemu_drive_all_servers"]
    blockdev = json.loads(shown["qemu_blockdev"].split("'")[1])
    assert [s["host"] for s in blockdev["server"]] == ["127.0.0.1", "127.0.0.2"]
    assert "<host name='127.0.0.2' port='24007'/>" in shown["libvirt_xml"]
    assert cli("show", "../etc").returncode == 3


# -- nothing the volume says is followed -----------------------------------------------------

@pytest.fixture
def volume_root(disks):
    """gv0's mount root, kept mounted by an attached disk; whatever the test
    puts there is removed afterwards."""
    name = disks.name()
    run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
    run("attach", {"VOL_NAME": name}, check=True)
    root = os.path.join(MOUNT_BASE, "gv0")
    made = []
    yield root, made
    for path in made:
        os.unlink(path)


def node_local_file(tmp_path):
    """A file of this node's own, which the volume's symlinks point at."""
    local = tmp_path / "node-local"
    local.mkdir(exist_ok=True)
    secret = local / "secret.ext.disk0"
    secret.write_bytes(b"node-local data\n")
    return secret


def untouched(path, stat_before):
    after = os.lstat(path)
    return (path.read_bytes() == b"node-local data\n" and os.listxattr(path) == []
            and (after.st_mtime_ns, after.st_ctime_ns, after.st_size)
            == (stat_before.st_mtime_ns, stat_before.st_ctime_ns, stat_before.st_size))


def stderr_lines(result):
    return result.stderr.rstrip("\n").splitlines()


def test_a_symlinked_image_is_skipped_by_list_and_orphans_and_refused_by_show(volume_root, tmp_path):
    root, made = volume_root
    secret = node_local_file(tmp_path)
    before = os.lstat(secret)
    link = image_path(f"it-link-{os.getpid()}.ext.disk0")
    os.symlink(secret, link)
    made.append(link)
    name = os.path.basename(link)

    listed = cli("list", "--json")
    assert listed.returncode == 0 and name not in {d["name"] for d in json.loads(listed.stdout)}
    assert len(stderr_lines(listed)) == 1 and " warning: " in listed.stderr
    assert f"{link} is a symbolic link, not a disk image: skipped" in listed.stderr

    orphans = cli("orphans", "--instances", "-", "--delete", name, stdin="")
    assert orphans.returncode == 3 and orphans.stdout == ""
    assert len(stderr_lines(orphans)) == 2  # the warning, and the refusal
    assert f"not orphans or .partial leftovers (or not on gv0), left alone: {name}" in orphans.stderr
    assert os.path.islink(link)

    shown = cli("show", name)
    assert shown.returncode == 3 and shown.stdout == ""
    assert stderr_lines(shown) == [f"ganeti-gluster show: error: {link} is a symbolic link, not a disk "
                                   "image: not showing it"]
    assert untouched(secret, before)


@pytest.mark.parametrize("command", [["list"], ["orphans", "--instances", "-"], ["show", "secret.ext.disk0"],
                                     ["status"]])
def test_a_symlinked_image_directory_is_refused(volume_root, tmp_path, command):
    root, made = volume_root
    secret = node_local_file(tmp_path)
    before = os.lstat(secret)
    directory = f"it-linkdir-{os.getpid()}"
    os.symlink(secret.parent, os.path.join(root, directory))
    made.append(os.path.join(root, directory))
    result = cli(*command, stdin="", env={"GLUSTER_DIR": directory})
    assert result.returncode == 3 and result.stdout == ""
    assert stderr_lines(result) == [
        f"ganeti-gluster {command[0]}: error: {root}/{directory} is a symbolic link (to {secret.parent}), "
        "not a directory: refusing to follow it"]
    assert untouched(secret, before)
    nested = cli(*command, stdin="", env={"GLUSTER_DIR": f"{directory}/deeper"})
    assert nested.returncode == 3 and f"{root}/{directory} is a symbolic link" in nested.stderr


def test_orphans_shows_a_killed_creates_partial_file_and_deletes_it_once_old(volume_root, disks):
    name = disks.name()
    partial = image_path(f".{name}.partial")
    create = subprocess.Popen([os.path.join(ROOT, "providers", "gluster", "create")],
                              env={"PATH": "/usr/bin:/bin", "GLUSTER_CONFIG": CONFIG, "VOL_NAME": name,
                                   "VOL_SIZE": "2048", "EXTP_PREALLOCATION": "full"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (os.path.exists(partial) and os.path.getsize(partial)) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(create.pid, signal.SIGKILL)  # the script and its FUSE worker, as a node crash would
    create.wait()
    time.sleep(0.5)  # the killed worker's last write lands
    assert os.path.exists(partial), "create did not leave a .partial file"
    assert not os.path.exists(image_path(name))
    size = os.path.getsize(partial)

    listed = cli("orphans", "--instances", "-", "--json", stdin="")
    shown = {p["name"]: p for p in json.loads(listed.stdout)["partial"]}
    leftover = shown[os.path.basename(partial)]
    assert leftover["disk"] == name and leftover["size"] == size and leftover["age_seconds"] < 60
    refused = cli("orphans", "--instances", "-", "--delete", os.path.basename(partial), stdin="")
    assert refused.returncode == 3 and "may still be making it; left alone" in refused.stderr
    assert os.path.exists(partial)

    os.utime(partial, (time.time() - 7200, time.time() - 7200))  # two hours later
    table = cli("orphans", "--instances", "-", stdin="").stdout
    line = next(l for l in table.splitlines() if l.startswith(os.path.basename(partial) + " "))
    assert line.split()[-2:] == ["2", "h"]
    deleted = cli("orphans", "--instances", "-", "--delete", os.path.basename(partial), "--json", stdin="")
    assert deleted.returncode in (0, 1), deleted.stderr  # 1: orphaned disks (the fixture's) are left
    assert json.loads(deleted.stdout)["deleted"] == [os.path.basename(partial)]
    assert not os.path.exists(partial)


@pytest.mark.parametrize("command", [["list"], ["orphans", "--instances", "-"], ["show", "x.ext.disk0"]])
def test_a_stopped_client_ends_the_command_within_io_timeout(volume_root, command):
    root, _ = volume_root
    pid = fuse_client_pid(root)
    os.kill(pid, signal.SIGSTOP)  # as a client stuck on a dead brick looks
    try:
        started = time.monotonic()
        result = cli(*command, stdin="", env={"GLUSTER_IO_TIMEOUT": "2"})
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result.returncode == 3 and result.stdout == "" and elapsed < 2 + 3, (elapsed, result)
    assert stderr_lines(result)[-1].startswith(f"ganeti-gluster {command[0]}: error: ")
    assert "did not finish within 2 s (io_timeout)" in result.stderr and f"pid {pid} is stopped" in result.stderr


def test_unreachable_servers_exit_3_with_a_reason():
    result = cli("--servers", "127.0.0.1", "check", env={"GLUSTER_PORT": "24999"})
    assert result.returncode == 3 and "127.0.0.1:24999" in result.stderr


@pytest.fixture
def hosts():
    subprocess.run(["/usr/bin/python3", HOSTS, "up", "6", "3"], check=True, capture_output=True,
                   timeout=300)
    yield
    subprocess.run(["/usr/bin/python3", HOSTS, "down"], capture_output=True, timeout=300)


def test_join_adds_a_new_replica_set_and_rebalances(hosts, tmp_path):
    pid = open("/tmp/ganeti-gluster-hosts/host1/glusterd.pid").read().strip()
    config = tmp_path / "gluster.env"
    config.write_text("GLUSTER_SERVERS=10.78.0.11\nGLUSTER_VOLUME=mr3\n")
    config.chmod(0o600)
    bricks = [f"--brick=10.78.0.1{i}:/tmp/ganeti-gluster-hosts/host{i}/brick/mr3" for i in (4, 5, 6)]

    def on_host1(*args):  # join runs on a GlusterFS server: host 1's namespaces
        return subprocess.run(["nsenter", "-t", pid, "-m", "-n", CLI, *args], capture_output=True,
                              text=True, timeout=600,
                              env={"PATH": "/usr/bin:/bin", "GLUSTER_CONFIG": str(config)})

    dry = on_host1("join", *bricks[:2])
    assert dry.returncode == 3 and "groups of 3" in dry.stderr
    plan = on_host1("join", *bricks, "--force")
    assert plan.returncode == 0 and "dry run" in plan.stdout
    assert "gluster peer probe 10.78.0.14" in plan.stdout
    info = subprocess.run(["/usr/bin/python3", HOSTS, "cli", "1", "volume", "info", "mr3"],
                          capture_output=True, text=True).stdout
    assert "Number of Bricks: 1 x 3 = 3" in info
    done = on_host1("join", *bricks, "--force", "--yes", "--timeout", "120")
    assert done.returncode == 0, done.stderr
    info = subprocess.run(["/usr/bin/python3", HOSTS, "cli", "1", "volume", "info", "mr3"],
                          capture_output=True, text=True).stdout
    assert "Number of Bricks: 2 x 3 = 6" in info


def test_join_queue_keeps_bricks_until_added_and_leaves_a_volume_with_disks_unbalanced(hosts, tmp_path):
    pid = open("/tmp/ganeti-gluster-hosts/host1/glusterd.pid").read().strip()
    config = tmp_path / "gluster.env"
    config.write_text(f"GLUSTER_SERVERS=10.78.0.11\nGLUSTER_VOLUME=mr3\nGLUSTER_MOUNT_BASE={tmp_path}/mnt\n"
                      "GLUSTER_UNMOUNT_DELAY=0\nGLUSTER_CALL_LOG=\n")
    config.chmod(0o600)
    queue = tmp_path / "queue"
    brick = {i: f"10.78.0.1{i}:/tmp/ganeti-gluster-hosts/host{i}/brick/mr3" for i in (4, 5, 6)}

    def join(*args):  # on a GlusterFS server: host 1's namespaces, as the node-add hook runs
        return subprocess.run(["nsenter", "-t", pid, "-m", "-n", CLI, "join", "--queue", str(queue),
                               "--yes", "--timeout", "120", *args], capture_output=True, text=True,
                              timeout=600, env={"PATH": "/usr/bin:/bin", "GLUSTER_CONFIG": str(config)})

    def volume_info():
        return subprocess.run(["/usr/bin/python3", HOSTS, "cli", "1", "volume", "info", "mr3"],
                              capture_output=True, text=True).stdout

    run("create", {"VOL_NAME": "held.ext.disk0", "VOL_SIZE": "8"}, check=True, config=str(config))
    try:
        assert "waiting for 2 more" in join("--brick", brick[4]).stdout
        assert "waiting for 1 more" in join("--brick", brick[5]).stdout
        # without force, glusterd refuses bricks on the root file system: add-brick fails
        failed = join("--brick", brick[6])
        assert failed.returncode == 3, failed.stdout + failed.stderr
        assert "root partition" in failed.stderr and f"the bricks stay queued in {queue}" in failed.stderr
        assert queue.read_text() == "".join(f"{brick[i]}\n" for i in (4, 5, 6))
        assert "Number of Bricks: 1 x 3 = 3" in volume_info()

        done = join("--brick", brick[6], "--force")
        assert done.returncode == 0, done.stderr
        assert queue.read_text() == ""
        assert "Number of Bricks: 2 x 3 = 6" in volume_info()
        assert ("rebalance skipped: volume mr3 holds disk images in ganeti/ and a rebalance migrates them "
                "under running VMs (GLUSTER_JOIN_REBALANCE=yes or --rebalance allows it), run gluster "
                "volume rebalance mr3 start when convenient\n") in done.stdout
        assert "gluster volume rebalance mr3 start" not in done.stdout.splitlines()
        rebalance = subprocess.run(["nsenter", "-t", pid, "-m", "-n", "gluster", "--mode=script", "volume",
                                    "rebalance", "mr3", "status"], capture_output=True, text=True)
        assert "not started" in (rebalance.stdout + rebalance.stderr).lower(), rebalance

        again = join("--brick", brick[4])
        assert again.returncode == 0
        assert again.stdout.startswith(f"{brick[4]} is in volume already: dropped from the queue\n")
        assert queue.read_text() == ""
    finally:
        run("remove", {"VOL_NAME": "held.ext.disk0"}, config=str(config))
