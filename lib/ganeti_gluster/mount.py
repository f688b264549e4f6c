"""The one FUSE mount of a volume on this node, shared by all its disks.

A mount is identified by (server, port, volume), not by the volume's name
alone: two clusters can each have a volume gv0. The node's own cluster
(GLUSTER_SERVERS, GLUSTER_PORT) mounts at <mount_base>/<volume>, any other at
<mount_base>/<volume>@<server>:<port>, and an existing mount is used only
when its source is the expected server and volume.

The glusterfs client daemonises before it has a volume to serve, so a mount
is verified by a bounded stat of its root and in /proc/self/mountinfo; when
it fails we find out why (server unreachable? volume missing or stopped?)
and say so. A dead mount (its client process is gone: every access fails
with ENOTCONN) is replaced when nothing uses it. Every touch of the mount is
bounded (fuse_worker), since a hung client makes it wait for ever.
"""

import errno
import os
import time

from . import diag, loopdev, procfs, retry, servers, unmount_timer
from .errors import ProviderError, TransientError
from .fuse_worker import isolated
from .locks import Lock

MOUNT_ATTEMPTS = 3
RETRY_PAUSE_SECONDS = 1.0
UMOUNT_TIMEOUT = 30
FSTYPE = "fuse.glusterfs"


class _MountFailed(Exception):
    """One mount attempt failed; retried, then diagnosed."""


def mount_key(settings, primary, port, volume):
    """The name of a volume's mount point and locks under mount_base."""
    if settings.node_servers and (primary, port) == (settings.node_servers[0], settings.node_port):
        return volume
    return f"{volume}@{primary}:{port}"


class VolumeMount:
    """The mount of `volume` under the node's mount base."""

    def __init__(self, settings, runner, primary, port, volume):
        self.settings = settings
        self.runner = runner
        self.primary = primary
        self.port = port
        self.volume = volume
        self.base = settings.mount_base
        self.key = mount_key(settings, primary, port, volume)
        self.source = f"{primary}:/{volume}"
        self.path = os.path.join(self.base, self.key)
        self.lock = Lock(os.path.join(self.base, ".locks", f"volume-{self.key}.lock"),
                         f"the mount of volume {volume}", settings.lock_timeout)
        # Its mtime is the last release; its holder is the process that will unmount.
        self.timer = Lock(os.path.join(self.base, ".locks", f"volume-{self.key}.unmount"),
                          f"the unmount timer of volume {volume}", settings.lock_timeout)

    @property
    def servers(self):
        """Primary first, then every other configured server, once each."""
        return [self.primary] + [s for s in (self.settings.servers or ()) if s != self.primary]

    # -- state -------------------------------------------------------------

    def _state(self):
        """'ok'; 'absent'; 'stale' (the client process is gone); 'unavailable'
        (the client lives but no brick answers); raises for a foreign mount."""
        entry = procfs.mount_entry(self.path)
        if entry is None:
            return "absent"
        fstype, source = entry
        if fstype != FSTYPE or source != self.source:
            raise ProviderError(f"{self.path} holds a {fstype} mount of {source}, not GlusterFS "
                                f"volume {self.source}; unmount it or change mount_base")
        try:
            # statfs always reaches the client process; a stat of the mount
            # root can be answered from the kernel's cache of a dead mount.
            _statvfs(self.path)
        except OSError as exc:
            if exc.errno not in (errno.ENOTCONN, errno.EIO, errno.ECONNABORTED):
                raise ProviderError(f"cannot access mount {self.path}: {exc.strerror}") from None
            return "unavailable" if procfs.glusterfs_clients(self.path) else "stale"
        return "ok"

    # -- using the mount ---------------------------------------------------

    def hold(self):
        """Holds the mount as it is (shared lock, nothing mounted); its state."""
        self.lock.acquire(exclusive=False)
        try:
            return self._state()
        except BaseException:
            self.lock.release()
            raise

    def acquire(self):
        """Makes sure the volume is mounted and holds it (shared lock) until
        release(); returns the mount point."""
        if self.hold() == "ok":
            return self.path
        self.lock.release()
        self.lock.acquire(exclusive=True)
        try:
            state = self._state()
            if state == "unavailable":
                # The client lives but no brick answers: remounting cannot help.
                raise TransientError(f"volume {self.volume} is mounted at {self.path} but does "
                                    "not answer (Transport endpoint is not connected): are its "
                                    "bricks up?")
            if state == "stale":
                self._drop_stale()
                state = "absent"
            if state == "absent":
                self._mount()
        except BaseException:
            self.lock.release()
            raise
        self.lock.acquire(exclusive=False)  # a downgrade is atomic for flock
        return self.path

    def release(self, unmount_if_unused=False):
        """Lets go of the mount. If asked, and the node does not keep its
        mounts (keep_mounted), the volume is unmounted when nobody uses it:
        at once with unmount_delay 0, else by unmount_timer.start_waiting()."""
        if unmount_if_unused and not self.settings.keep_mounted and self.lock.fd is not None:
            if self.settings.unmount_delay and self.is_mounted():
                unmount_timer.restart(self)
            else:
                self._unmount_now_if_unused()
        self.lock.release()

    def unmount_if_unused(self):
        """Unmounts the volume now if it is mounted and nobody uses it."""
        if self.is_mounted():
            self.lock.acquire(exclusive=False)
            try:
                self._unmount_now_if_unused()
            finally:
                self.lock.release()

    def _unmount_now_if_unused(self):
        # Fails (and drops our shared lock) if another script holds the
        # volume: then it is in use and the mount stays.
        if self.lock.try_exclusive():
            self._unmount_if_unused()

    def strict_o_direct(self):
        """Whether O_DIRECT writes through this mount reach the bricks before
        they are acknowledged, read from the client's own graph (.meta): True
        when write-behind is absent or has strict-O_DIRECT on."""
        write_behind = os.path.join(self.path, ".meta", "graphs", "active",
                                    f"{self.volume}-write-behind")
        try:
            return _strict_o_direct(write_behind)
        except OSError as exc:
            raise ProviderError(f"cannot read the client graph of volume {self.volume}: "
                                f"{exc.strerror}") from None

    def space(self):
        """(bytes free, bytes total) as a client sees them: statfs of the mount
        (the bricks' own figures ignore reserved blocks)."""
        self.acquire()
        try:
            stats = _statvfs(self.path)
        finally:
            self.release(unmount_if_unused=True)
        return stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize

    def is_mounted(self):
        return procfs.mount_entry(self.path) is not None

    # -- making and removing -----------------------------------------------

    def _mount(self):
        os.makedirs(self.base, mode=0o700, exist_ok=True)
        os.chmod(self.base, 0o700)
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        # The glusterfs client itself rather than mount -t glusterfs: the
        # mount.glusterfs script spends ~50 ms of shell building this one
        # command line (a cold attach took 1.4x the hand-run mount + losetup).
        # Like that script, wait for the mount with a stat of its root; ours
        # is bounded.
        command = ["glusterfs", "--process-name", "fuse"]
        command += [f"--volfile-server={server}" for server in self.servers]
        command += [f"--volfile-server-port={self.port}", f"--volfile-id=/{self.volume}",
                    *client_options(self.settings, self.volume), self.path]
        deadline = time.monotonic() + self.settings.mount_timeout

        def attempt():
            error = None
            try:
                self.runner.run(command, timeout=self._remaining(deadline))
                self.runner.run(["stat", "--format=%i", self.path], timeout=self._remaining(deadline))
            except ProviderError as exc:
                error = exc
            if not self._state_after_mount(error is None):
                raise _MountFailed(str(error or "the client started but nothing is mounted"))

        try:
            retry.bounded(attempt, _MountFailed, self.settings.mount_timeout, RETRY_PAUSE_SECONDS,
                          MOUNT_ATTEMPTS, f"mounting volume {self.volume}")
        except _MountFailed as exc:
            raise ProviderError(self.diagnose(exc)) from None
        diag.debug(f"mounted {self.primary}:/{self.volume} on {self.path}")

    def _remaining(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _MountFailed(f"no time left within mount_timeout {self.settings.mount_timeout:g} s")
        return remaining

    def _state_after_mount(self, answered):
        """Whether the new mount works; a half-made one is cleared for the
        next attempt. Without an answer to our stat, statfs could block: the
        mount is then cleared unexamined."""
        if not answered:
            if self.is_mounted():
                self._lazy_unmount()
            return False
        try:
            state = self._state()
        except ProviderError:
            return False
        if state == "stale":
            self._lazy_unmount()
        return state == "ok"

    def diagnose(self, error):
        """Why the volume cannot be mounted, in one line."""
        reachable, problems = servers.probe_all(self.servers, self.port)
        if not reachable:
            return (f"cannot mount volume {self.volume}: no GlusterFS server reachable "
                    f"({'; '.join(problems)})")
        from . import gluster_cli

        state = gluster_cli.volume_state(self.runner, reachable[0], self.port, self.volume,
                                         self.settings.command_timeout)
        if state in ("missing", "stopped"):
            word = "does not exist" if state == "missing" else "is not started"
            return f"cannot mount volume {self.volume}: it {word} on {reachable[0]}"
        log = "/var/log/glusterfs/" + self.path.strip("/").replace("/", "-") + ".log"
        return f"cannot mount volume {self.volume} from {reachable[0]}: {error} (see {log})"

    def _drop_stale(self):
        """Replaces a dead mount. Loop devices on it are dead too: they are
        detached (their disks get new ones at their next attach) unless
        something still holds one open, which only its owner can end."""
        users = loopdev.users_of(self.path)
        held = [(device, path, loopdev.holders(device)) for device, path in users]
        busy = [(device, path, who) for device, path, who in held if who]
        if busy:
            details = "; ".join(f"disk {os.path.basename(path)} on {device} is held by {', '.join(who)}"
                                for device, path, who in busy)
            raise ProviderError(
                f"the mount of volume {self.volume} at {self.path} is dead (Transport endpoint "
                f"is not connected): {details}; stop what holds them (e.g. gnt-instance stop), "
                "run detach for those disks, then retry")
        for device, path in users:
            diag.warn(f"detaching {device} of disk {os.path.basename(path)} from the dead mount")
            loopdev.detach(device, path.removesuffix(" (deleted)"), self.runner)
        diag.warn(f"the mount of volume {self.volume} at {self.path} is dead; remounting")
        self._lazy_unmount()

    def _lazy_unmount(self):
        self.runner.run(["umount", "--lazy", self.path], timeout=UMOUNT_TIMEOUT, check=False)

    def _unmount_if_unused(self):
        if not self.is_mounted():
            return
        if loopdev.users_of(self.path):
            return
        result = self.runner.run(["umount", self.path], timeout=UMOUNT_TIMEOUT, check=False)
        if result.returncode != 0:
            diag.debug(f"mount {self.path} kept: {result.stderr.strip()}")
            return
        diag.debug(f"unmounted {self.path}")
        try:
            os.rmdir(self.path)
        except OSError:
            pass


def client_options(settings, volume):
    """The node's tuning of its glusterfs client (GLUSTER_FUSE_*, GLUSTER_CLIENT_*).
    None of it caches writes: what a VM is told is written has reached the bricks."""
    options = [f"--reader-thread-count={settings.fuse_reader_threads}",
               f"--attribute-timeout={settings.fuse_attribute_timeout:g}",
               f"--entry-timeout={settings.fuse_entry_timeout:g}",
               f"--negative-timeout={settings.fuse_negative_timeout:g}"]
    # Command-line translator options override the volume's own; the
    # translators' names in the client graph start with the volume's.
    if settings.client_event_threads:
        options.append(f"--xlator-option={volume}-client-*.event-threads={settings.client_event_threads}")
    if settings.client_io_threads:
        options.append(f"--xlator-option={volume}-io-threads.thread-count={settings.client_io_threads}")
    return options


@isolated("looking at the mount")
def _statvfs(path):
    return os.statvfs(path)


@isolated("reading the client graph")
def _strict_o_direct(write_behind):
    """Whether the write-behind translator of a client graph is absent or
    has strict-O_DIRECT on."""
    try:
        with open(os.path.join(write_behind, "options", "strict-O_DIRECT")) as handle:
            return handle.read(4096).strip() in ("on", "yes", "true", "enable", "1")
    except FileNotFoundError:
        return not os.path.isdir(write_behind)
