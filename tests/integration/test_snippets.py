"""The snippets `ganeti-gluster show` prints for other stacks, run by those stacks.

For a disk the provider's own scripts made and wrote (through its loop device),
each QEMU form is given to a qemu-system-x86_64 started by hand, exactly as
printed (split with shlex), and the libvirt <disk> element, verbatim, to a
transient domain of Debian's libvirtd; each must read the disk's bytes back
through QEMU's gluster driver (libgfapi), and a wrong pattern must show as a
mismatch, so that these checks can fail.

The bytes are checked with HMP's `qemu-io NODE "read -P 0xNN OFFSET LENGTH"`.
QEMU 7.2 prints qemu-io's report on its stdout, not on the monitor (the HMP
reply is empty, or an error such as "Device 'x' not found"): a match is
"read LENGTH/LENGTH bytes at offset OFFSET" alone, a mismatch has
"Pattern verification failed at offset OFFSET, LENGTH bytes" before it. So
the reports are read from QEMU's stdout: a file for a QEMU started here, the
domain's log (written by virtlogd) for libvirt's.

libvirtd and virtlogd run in a private mount namespace in which /etc/libvirt,
/run/libvirt, /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt are
directories of a temporary directory, and /etc/passwd and /etc/group copies
that name the user libvirt-qemu (Debian's libvirtd resolves it before it
reads qemu.conf; libvirt-daemon-system would create it): nothing of the
machine's own libvirt is used or changed. QEMU runs as root, without
cgroups, namespaces or a security driver.

Every QEMU is stopped with SIGKILL once its checks are done: a QEMU that
quits (or gets SIGTERM, as `virsh destroy` sends first) closes its disks,
and libgfapi's glfs_fini takes ~10 s per client; these QEMUs only read.
"""

import json
import mmap
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ElementTree

import pytest

from conftest import CONFIG, MIB, ROOT, DiskTracker, run

CLI = os.path.join(ROOT, "bin", "ganeti-gluster")
QEMU = "/usr/bin/qemu-system-x86_64"
LIBVIRTD, VIRTLOGD, VIRSH = "/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "/usr/bin/virsh"
SERVERS = ["127.0.0.1", "127.0.0.2"]  # GLUSTER_SERVERS of the harness
DAEMON_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TIMEOUT = 30  # any one step: QEMU's start, a QMP reply, a report, a daemon's start or stop

SIZE_MIB = 128
# (pattern byte, offset, length). gr3 is sharded (group virt: 64 MiB shards):
# A lies in the first shard, B straddles the boundary into the second, and
# HOLE, never written, is in the second shard, past B.
A = (0xa5, 3 * MIB, MIB)
B = (0x3c, 64 * MIB - MIB // 2, MIB)
HOLE = (0x00, 100 * MIB, MIB)

QEMU_FORMS = ["qemu_drive", "qemu_drive_all_servers", "qemu_blockdev"]


def cli(*args):
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "GLUSTER_CONFIG": CONFIG})


def require(path, package):
    """A missing tool fails the test (never skips it)."""
    assert os.access(path, os.X_OK), f"{path} is missing: install {package} (tests/harness/install-deps)"


class Disk:
    def __init__(self, name, volume, shown):
        self.name, self.volume, self.shown = name, volume, shown
        self.path = f"ganeti/{name}"


def write_patterns(device):
    fd = os.open(device, os.O_WRONLY | os.O_DIRECT)
    try:
        for pattern, offset, length in (A, B):
            buffer = mmap.mmap(-1, length)  # page-aligned, as O_DIRECT needs
            buffer.write(bytes([pattern]) * length)
            assert os.pwrite(fd, buffer, offset) == length
        os.fsync(fd)
    finally:
        os.close(fd)


# gv0 only: QEMUs killed with a replica-3 disk open leave heal entries on gr3, which
# the README check run next (make docs) reports as a warning.
@pytest.fixture(scope="module", params=["gv0"])
def disk(request):
    """A disk on the volume, A and B written through its loop device, detached;
    with what `ganeti-gluster show --json` printed for it."""
    volume = request.param
    pool = {"EXTP_POOL": "replica"} if volume == "gr3" else {}
    tracker = DiskTracker()
    try:
        name = tracker.name(**pool)
        env = {"VOL_NAME": name, **pool}
        run("create", {**env, "VOL_SIZE": str(SIZE_MIB)}, check=True)
        device = run("attach", env, check=True).stdout.split("\n")[0]
        write_patterns(device)
        run("detach", env, check=True)
        result = cli(*(["--pool", "replica"] if pool else []), "show", name, "--json")
        assert result.returncode == 0 and result.stderr == "", result.stderr
        shown = json.loads(result.stdout)
        assert shown["uri"] == f"gluster://{SERVERS[0]}:24007/{volume}/ganeti/{name}"
        yield Disk(name, volume, shown)
    finally:
        tracker.cleanup()


# -- reading a disk through a QEMU ------------------------------------------------------------

class Output:
    """What a QEMU prints on its stdout, read as it is appended to a file."""

    def __init__(self, path):
        self.path, self.position = path, 0

    def through(self, marker, timeout=TIMEOUT):
        """The text from the last position up to the line `marker` that follows it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.path, "rb") as handle:
                    handle.seek(self.position)
                    text = handle.read().decode(errors="replace")
            except FileNotFoundError:
                text = ""
            end = text.find(marker + "\n")
            if end >= 0:
                end += len(marker) + 1
                self.position += len(text[:end].encode())
                return text[:end]
            assert time.monotonic() < deadline, f"QEMU never printed {marker!r}; it printed {text!r}"
            time.sleep(0.05)


def qemu_io_read(hmp, output, node, pattern, offset, length):
    """'match' or 'mismatch': qemu-io's verdict on `length` bytes of `pattern` at `offset`."""
    reply = hmp(f'qemu-io {node} "read -P 0x{pattern:02x} {offset} {length}"')
    assert reply.strip() == "", f"qemu-io {node}: {reply}"
    text = output.through(f"read {length}/{length} bytes at offset {offset}")
    return "mismatch" if f"Pattern verification failed at offset {offset}, {length} bytes" in text else "match"


def assert_reads_the_patterns(read):
    for pattern, offset, length in (A, B, HOLE):
        assert read(pattern, offset, length) == "match", f"0x{pattern:02x} at {offset}"
    # and it can tell: the wrong pattern where A and where B are
    assert read(B[0], A[1], A[2]) == "mismatch"
    assert read(A[0], B[1], B[2]) == "mismatch"
    assert read(HOLE[0], B[1], B[2]) == "mismatch"


class Qmp:
    """A minimal QMP client: one command at a time, events skipped, bounded waits."""

    def __init__(self, path, process):
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert process.poll() is None, f"QEMU exited with {process.returncode}"
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(TIMEOUT)
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                assert time.monotonic() < deadline, f"no QMP socket {path} after {TIMEOUT} s"
                time.sleep(0.05)
        self.reader = self.sock.makefile("rb")
        assert "QMP" in self._receive()
        self.execute("qmp_capabilities")

    def _receive(self):
        line = self.reader.readline()
        assert line, "QEMU closed its QMP socket"
        return json.loads(line)

    def execute(self, command, **arguments):
        message = {"execute": command, **({"arguments": arguments} if arguments else {})}
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        while True:
            reply = self._receive()
            if "event" not in reply:
                assert "error" not in reply, f"{command}: {reply['error']}"
                return reply["return"]

    def hmp(self, command_line):
        return self.execute("human-monitor-command", **{"command-line": command_line})

    def close(self):
        self.reader.close()
        self.sock.close()


def gluster_node(nodes, disk):
    """The one gluster node among the block nodes, checked to be this disk's."""
    glusters = [n for n in nodes if n["drv"] == "gluster"]
    assert len(glusters) == 1 and all(n["drv"] in ("gluster", "raw") for n in nodes), nodes
    assert f"{disk.volume}" in glusters[0]["file"] and disk.path in glusters[0]["file"], glusters[0]
    return glusters[0]


@pytest.mark.parametrize("form", QEMU_FORMS)
def test_qemu_reads_the_disk_through_the_form(disk, form):
    require(QEMU, "qemu-system-x86")
    snippet = shlex.split(disk.shown[form])
    with tempfile.TemporaryDirectory(prefix="snip-qemu-") as scratch:
        sock = os.path.join(scratch, "qmp.sock")
        stdout = os.path.join(scratch, "stdout")
        with open(stdout, "wb") as out, open(os.path.join(scratch, "stderr"), "wb") as err:
            qemu = subprocess.Popen([QEMU, "-nodefaults", "-display", "none", "-machine", "none", "-S",
                                     "-qmp", f"unix:{sock},server=on,wait=off", *snippet],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        qmp = None
        try:
            try:
                qmp = Qmp(sock, qemu)
            except (AssertionError, OSError):  # e.g. reset: QEMU exited as it refused the form
                qemu.kill()
                qemu.wait(TIMEOUT)
                raise AssertionError(f"QEMU refused {form}: "
                                     f"{open(os.path.join(scratch, 'stderr')).read()}") from None
            nodes = qmp.execute("query-named-block-nodes", flat=True)
            gluster = gluster_node(nodes, disk)
            # O_DIRECT, as a KVM disk must be opened (cache=none, cache.direct)
            assert all(n["cache"]["direct"] for n in nodes), nodes
            if form == "qemu_drive":
                assert gluster["file"] == disk.shown["uri"]  # the URI names one server
                assert [b["device"] for b in qmp.execute("query-block")] == ["disk0"]
            else:  # the volfile servers, every one of them
                assert f'"volume": "{disk.volume}"' in gluster["file"]
                assert f'"path": "{disk.path}"' in gluster["file"]
                for i, server in enumerate(SERVERS):
                    assert f'"server.{i}.host": "{server}"' in gluster["file"], gluster["file"]
            if form == "qemu_blockdev":
                assert {n["node-name"]: n["drv"] for n in nodes} == {"disk0": "raw", "disk0-file": "gluster"}
            output = Output(stdout)
            # "disk0": the -drive forms' id (a BlockBackend), the -blockdev form's raw node
            assert_reads_the_patterns(lambda *check: qemu_io_read(qmp.hmp, output, "disk0", *check))
        finally:
            if qmp:
                qmp.close()
            qemu.kill()  # SIGKILL: quitting would wait ~10 s in glfs_fini; nothing was written
            qemu.wait(TIMEOUT)


# -- libvirt ---------------------------------------------------------------------------------

LIBVIRTD_CONF = """\
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""
VIRTLOGD_CONF = 'log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n'
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
"""
# private directory -> where the daemons see it
PRIVATE = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
           "log": "/var/log/libvirt", "cache": "/var/cache/libvirt"}


def _is_running(pid, name):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return name.encode() in handle.read()
    except OSError:
        return False


def _stop(process, timeout=TIMEOUT):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class Libvirt:
    def __init__(self, state):
        self.state = state
        self.uri = f"qemu:///system?socket={state}/run/libvirt-sock"

    def virsh(self, *args, check=True):
        result = subprocess.run([VIRSH, "-c", self.uri, *args], capture_output=True, text=True,
                                timeout=120, env={"PATH": DAEMON_PATH, "LC_ALL": "C"})
        if check:
            assert result.returncode == 0, f"virsh {' '.join(args)}: {result.stderr}{self.log_tail()}"
        return result

    def qemu_pid(self, domain):
        return int(open(os.path.join(self.state, "run", "qemu", f"{domain}.pid")).read())

    def domain_log(self, domain):
        return os.path.join(self.state, "log", "qemu", f"{domain}.log")

    def log_tail(self):
        try:
            lines = open(os.path.join(self.state, "log", "libvirtd.log")).read().splitlines()
        except OSError:
            return ""
        return "\nlibvirtd.log:\n" + "\n".join(lines[-5:])

    def kill_qemus(self):
        """SIGKILL for every QEMU of this libvirtd (none should be left)."""
        for entry in os.listdir(os.path.join(self.state, "run", "qemu")):
            if entry.endswith(".pid"):
                try:
                    pid = int(open(os.path.join(self.state, "run", "qemu", entry)).read())
                except (OSError, ValueError):
                    continue
                if _is_running(pid, "qemu-system"):
                    os.kill(pid, signal.SIGKILL)


def _wait_for_socket(path, process, name):
    deadline = time.monotonic() + TIMEOUT
    while not os.path.exists(path):
        assert process.poll() is None, f"{name} exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{name} made no {path} in {TIMEOUT} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def libvirt():
    """virtlogd and libvirtd of this test alone, stopped (by pid) however it ends."""
    for path, package in ((LIBVIRTD, "libvirt-daemon"), (VIRTLOGD, "libvirt-daemon"),
                          (VIRSH, "libvirt-clients"),
                          ("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so",
                           "libvirt-daemon-driver-qemu")):
        assert os.path.exists(path), f"{path} is missing: install {package} (tests/harness/install-deps)"
    assert os.path.exists("/dev/kvm"), "/dev/kvm is missing: the domain is of type kvm"
    state = tempfile.mkdtemp(prefix="snip-libvirt-", dir="/tmp")
    made_targets, daemons, lib = [], [], Libvirt(state)
    try:
        for name in PRIVATE:
            os.mkdir(os.path.join(state, name), 0o700)
        for name, text in (("libvirtd.conf", LIBVIRTD_CONF), ("virtlogd.conf", VIRTLOGD_CONF),
                           ("qemu.conf", QEMU_CONF)):
            with open(os.path.join(state, "etc", name), "w") as handle:
                handle.write(text)
        binds = []
        for name, entry in (("passwd", "libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin"),
                            ("group", "libvirt-qemu:x:64055:")):
            text = open(f"/etc/{name}").read()
            if not any(line.startswith("libvirt-qemu:") for line in text.splitlines()):
                text = text.rstrip("\n") + "\n" + entry + "\n"
            with open(os.path.join(state, name), "w") as handle:
                handle.write(text)
            binds.append((os.path.join(state, name), f"/etc/{name}"))
        for name, target in PRIVATE.items():
            if not os.path.isdir(target):  # a mount point is needed; removed again if left empty
                os.mkdir(target, 0o755)
                made_targets.append(target)
            binds.append((os.path.join(state, name), target))
        script = " && ".join([f"mount --bind {shlex.quote(s)} {t}" for s, t in binds]
                             + [f"exec {VIRTLOGD} -f /etc/libvirt/virtlogd.conf -p /run/libvirt/virtlogd.pid"])
        env = {"PATH": DAEMON_PATH, "LC_ALL": "C"}
        with open(os.path.join(state, "daemons.out"), "wb") as out:
            # unshare and nsenter (no pid namespace) exec: each pid is the daemon's own
            virtlogd = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--",
                                         "sh", "-c", script], env=env, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=out)
            daemons.append(virtlogd)
            _wait_for_socket(os.path.join(state, "run", "virtlogd-sock"), virtlogd, "virtlogd")
            libvirtd = subprocess.Popen(["nsenter", "-t", str(virtlogd.pid), "-m", "--", LIBVIRTD,
                                         "-f", "/etc/libvirt/libvirtd.conf", "-p", "/run/libvirt/libvirtd.pid"],
                                        env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            daemons.append(libvirtd)
        _wait_for_socket(os.path.join(state, "run", "libvirt-sock"), libvirtd, "libvirtd")
        lib.virsh("version")  # waits for the QEMU driver (it probes QEMU's capabilities)
        yield lib
    finally:
        if os.path.isdir(os.path.join(state, "run", "qemu")):
            lib.kill_qemus()
        for process in reversed(daemons):
            _stop(process)
        for target in made_targets:
            try:
                os.rmdir(target)
            except OSError:
                pass
        shutil.rmtree(state, ignore_errors=True)


def domain_xml(name, disk_xml):
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
{disk_xml}
  </devices>
</domain>
"""


def test_libvirt_reads_the_disk_through_the_disk_element(disk, libvirt):
    name = f"snip-{uuid.uuid4().hex[:8]}"
    xml_path = os.path.join(libvirt.state, f"{name}.xml")
    with open(xml_path, "w") as handle:
        handle.write(domain_xml(name, disk.shown["libvirt_xml"]))
    libvirt.virsh("create", xml_path, "--paused")
    pid = None
    try:
        pid = libvirt.qemu_pid(name)
        # libvirt's view: a network disk, protocol gluster, every server
        live = ElementTree.fromstring(libvirt.virsh("dumpxml", name).stdout)
        [element] = live.findall("./devices/disk")
        source = element.find("source")
        assert element.get("type") == "network" and source.get("protocol") == "gluster"
        assert source.get("name") == f"{disk.volume}/{disk.path}"
        assert [h.get("name") for h in source.findall("host")] == SERVERS
        alias = element.find("alias").get("name")
        # QEMU's: the command line libvirt gave it opens the image with the gluster driver
        argv = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")
        blockdevs = [json.loads(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a == "-blockdev"]
        [storage] = [b for b in blockdevs if b["driver"] == "gluster"]
        assert storage["volume"] == disk.volume and storage["path"] == disk.path
        assert [s["host"] for s in storage["server"]] == SERVERS
        assert not any(disk.name in a for a in argv if "gluster" not in a), argv  # no file of it

        def qmp(command, **arguments):
            message = {"execute": command, **({"arguments": arguments} if arguments else {})}
            reply = json.loads(libvirt.virsh("qemu-monitor-command", name, json.dumps(message)).stdout)
            assert "error" not in reply, reply
            return reply["return"]

        gluster_node(qmp("query-named-block-nodes", flat=True), disk)
        [block] = [b for b in qmp("query-block") if alias in b.get("qdev", "")]
        node = block["inserted"]["node-name"]  # the raw node over the gluster one

        def hmp(command_line):
            return libvirt.virsh("qemu-monitor-command", name, "--hmp", command_line).stdout

        output = Output(libvirt.domain_log(name))
        assert_reads_the_patterns(lambda *check: qemu_io_read(hmp, output, node, *check))
    finally:
        if pid and _is_running(pid, "qemu-system"):
            os.kill(pid, signal.SIGKILL)  # destroy alone would SIGTERM and wait ~10 s in glfs_fini
        # Fails ("failed to get domain") when libvirt has already seen its QEMU die and
        # dropped the transient domain: what counts is that the domain is gone.
        destroyed = libvirt.virsh("destroy", name, check=False)
        deadline = time.monotonic() + TIMEOUT
        while name in libvirt.virsh("list", "--all", "--name").stdout.split():
            assert time.monotonic() < deadline, f"domain {name} still listed: {destroyed.stderr}"
            time.sleep(0.1)
