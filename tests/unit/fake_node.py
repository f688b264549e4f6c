"""A node without root: the volume is a temporary directory, and the kernel's
mounts and loop devices are a few dicts that a fake command runner changes.

As Ganeti's own storage tests do, the operations run for real against files,
while every external command (glusterfs, losetup, umount) goes to FakeRunner,
which records its argument list and answers as the real tool would. The
/proc and /sys lookups of procfs and loopdev are pointed at the same dicts.
"""

import io
import os

from ganeti_gluster import loopdev, main as main_module, procfs
from ganeti_gluster.runner import CommandFailed, Result


class FakeLoop:
    def __init__(self, path, inode, dio=True):
        self.path, self.inode, self.dio = path, inode, dio
        self.size = os.stat(path).st_size
        self.autoclear = False
        self.held = False  # opened by someone: a detach only marks it


class FakeRunner:
    """The kernel's mounts and loop devices as far as the provider can see them."""

    def __init__(self):
        self.commands = []
        self.mounts = {}     # mount point -> source ("host:/volume")
        self.loops = {}      # "loopN" -> FakeLoop
        self.direct_io = True  # what a new loop device gets
        self.fail = {}       # program -> stderr of a failure
        self.clients = {}    # client address -> bricks it is connected to (glusterd's view)
        self.hosts = {}      # host name -> address (getent)
        self.local_address = "10.0.0.1"  # this node's address towards the servers
        self.queue = {}      # /sys/block/loopN/queue/ATTRIBUTE -> value written
        self.refused_queue = {}  # ATTRIBUTE -> the kernel's reason for refusing a value

    def run(self, args, timeout, check=True):
        self.commands.append(list(args))
        program = args[0]
        if program in self.fail:
            if check:
                raise CommandFailed(args, 1, self.fail[program])
            return Result(1, "", self.fail[program])
        stdout = getattr(self, "_" + program.replace("-", "_"))(args[1:])
        return Result(0, stdout or "", "")

    def _glusterfs(self, args):
        servers = [a.split("=", 1)[1] for a in args if a.startswith("--volfile-server=")]
        volume = next(a for a in args if a.startswith("--volfile-id=")).split("=/", 1)[1]
        self.mounts[args[-1]] = f"{servers[0]}:/{volume}"

    def _gluster(self, args):
        """glusterd, over --remote-host: `volume status VOL clients --xml` only."""
        words = [a for a in args if not a.startswith("--")]
        assert words[:2] == ["volume", "status"] and words[3:] == ["clients"], words
        bricks = sorted({b for bricks in self.clients.values() for b in bricks} or {"gluster1.example.com:/b"})
        nodes = "".join(
            f"<node><hostname>{b.split(':')[0]}</hostname><path>{b.split(':')[1]}</path><status>1</status>"
            f"<clientsStatus>" + "".join(f"<client><hostname>{a}:49152</hostname></client>"
                                         for a, on in self.clients.items() if b in on)
            + "</clientsStatus></node>" for b in bricks)
        return (f"<cliOutput><opRet>0</opRet><volStatus><volumes><volume><volName>{words[2]}</volName>"
                f"{nodes}</volume></volumes></volStatus></cliOutput>")

    def _getent(self, args):
        return f"{self.hosts[args[-1]]}     STREAM {args[-1]}\n" if args[-1] in self.hosts else ""

    def _stat(self, args):
        return "1\n"

    def _umount(self, args):
        self.mounts.pop(args[-1], None)

    def _losetup(self, args):
        if args[0] == "--find":
            path = args[-1]
            name = f"loop{len(self.loops) + 7}"
            self.loops[name] = FakeLoop(path, os.lstat(path).st_ino, self.direct_io)
            return f"/dev/{name}\n"
        name = os.path.basename(args[-1])
        if args[0] == "--detach":
            if self.loops[name].held:
                self.loops[name].autoclear = True
            else:
                del self.loops[name]
        elif args[0] == "--set-capacity":
            self.loops[name].size = os.stat(self.loops[name].path).st_size
        return ""

    # -- what /proc and /sys show --------------------------------------------------------

    def sysfs(self, path):
        parts = path.split("/")  # /sys/block/loopN/loop/backing_file
        loop = self.loops.get(parts[3])
        if loop is None:
            return None
        field = parts[-1]
        return {"backing_file": loop.path, "dio": "1" if loop.dio else "0",
                "autoclear": "1" if loop.autoclear else "0", "size": str(loop.size // 512),
                "dev": f"7:{parts[3][4:]}"}.get(field)

    def tune_queue(self, path, value):
        refused = self.refused_queue.get(os.path.basename(path))
        if not refused:
            self.queue[path] = value
        return refused

    def mount_entry(self, mount_point, mountinfo=None):
        source = self.mounts.get(mount_point)
        return ("fuse.glusterfs", source) if source else None


def install(monkeypatch, runner):
    """Points the provider's /proc and /sys lookups, and its TCP probe of the
    servers, at `runner`."""
    from ganeti_gluster import servers

    monkeypatch.setattr(servers, "_connect", lambda host, port, timeout: (None, runner.local_address))
    monkeypatch.setattr(procfs, "mount_entry", runner.mount_entry)
    monkeypatch.setattr(procfs, "holders_of", lambda path: [])
    monkeypatch.setattr(loopdev, "_read", runner.sysfs)
    monkeypatch.setattr(procfs, "sized_loop_devices", lambda: list(runner.loops))
    monkeypatch.setattr(loopdev, "bound_devices",
                        lambda: [("/dev/" + n, loop.path) for n, loop in runner.loops.items()])
    monkeypatch.setattr(loopdev, "_backing_inode", lambda device, node=None: getattr(
        runner.loops.get(os.path.basename(device)), "inode", None))
    monkeypatch.setattr(loopdev, "_mark_as_node", lambda device, node: None)
    monkeypatch.setattr(loopdev, "_tune_queue", runner.tune_queue)
    monkeypatch.setattr(loopdev, "holders",
                        lambda device: ["pid 4711 (qemu)"] if runner.loops[os.path.basename(device)].held else [])
    monkeypatch.setattr(loopdev, "require_block_device", lambda device: None)


class Node:
    """Runs provider scripts in-process on the fake node: (exit code, stdout, stderr)."""

    def __init__(self, tmp_path, monkeypatch, capsys, extra_config=""):
        self.mount_base = str(tmp_path / "mnt")
        self.config = tmp_path / "gluster.env"
        self.config.write_text(f"GLUSTER_SERVERS=gluster1.example.com,gluster2.example.com\n"
                               f"GLUSTER_VOLUME=vmstore\nGLUSTER_MOUNT_BASE={self.mount_base}\n"
                               "GLUSTER_UNMOUNT_DELAY=0\nGLUSTER_CALL_LOG=\nGLUSTER_USERSPACE=always\n"
                               "GLUSTER_NODE_NAME=node1\nGLUSTER_POOL_FAST_VOLUME=ssd\n" + extra_config)
        self.config.chmod(0o600)
        self.runner = FakeRunner()
        self.capsys = capsys
        install(monkeypatch, self.runner)

    @property
    def volume(self):
        return os.path.join(self.mount_base, "vmstore")

    def image(self, name, volume="vmstore"):
        return os.path.join(self.mount_base, volume, "ganeti", name)

    def run(self, action, args=(), **env):
        environ = {"GLUSTER_CONFIG": str(self.config), **env}
        self.capsys.readouterr()
        stdout = io.StringIO()
        code = main_module.main(action, list(args), environ=environ, runner=self.runner, stdout=stdout)
        return code, stdout.getvalue(), self.capsys.readouterr().err

    def ok(self, action, args=(), **env):
        code, stdout, stderr = self.run(action, args, **env)
        assert code == 0, stderr
        return stdout

    def refused(self, action, args=(), **env):
        """A failure: its reason the last line on stderr (stdout empty but for verify's lines)."""
        code, stdout, stderr = self.run(action, args, **env)
        assert code != 0 and (stdout == "" or action == "verify"), (code, stdout)
        last = stderr.rstrip("\n").splitlines()[-1]
        assert last.startswith(f"gluster {action}: error: "), stderr
        return last
