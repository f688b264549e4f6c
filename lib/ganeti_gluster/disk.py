"""A disk of one request: where it lives, its mount, its lock, its loop device."""

import os

from . import images, loopdev
from .errors import ProviderError
from .location import Location
from .locks import Lock
from .mount import VolumeMount


class Disk:
    """One disk of one request: where it lives, its mount, its lock."""

    def __init__(self, request, settings, runner, name=None):
        self.settings = settings
        if request.logical_id is not None:
            location = request.logical_id
        else:
            location = Location(settings.require("servers")[0], settings.port,
                                settings.require("volume"), settings.dir, request.name)
        self.location = location.renamed(name) if name else location
        self.mount = VolumeMount(settings, runner, self.location.host, self.location.port,
                                 self.location.volume)
        settings.check_allowed(self.mount.servers, self.location.port)
        self.path = self.location.image_path(self.mount.path)
        state = os.path.join(settings.mount_base, ".locks", "disks", self.mount.key,
                             self.location.directory, self.location.name)
        self.lock = Lock(state + ".lock", f"disk {self.location.name}", settings.lock_timeout)
        self.device_note = state + ".device"  # the loop device found last

    @property
    def name(self):
        return self.location.name

    def stat(self):
        """lstat of the image, None if there is none; refuses a symlink or
        anything else that is not a regular file, in the image or on the way."""
        return images.find_image(self.mount.path, self.location.directory, self.location.name)

    def require(self):
        info = self.stat()
        if info is None:
            raise ProviderError(f"disk {self.name} does not exist on volume "
                                f"{self.location.volume} (no {self.path})")
        return info

    def forget_local_state(self):
        """Removes the lock file and the device note of a disk that is gone
        (with the lock held)."""
        try:
            os.unlink(self.device_note)
        except FileNotFoundError:
            pass
        self.lock.remove_file()

    def loop_device(self, info, expected=None):
        """The disk's loop device on this node, or None. While the disk's lock
        is held, the device found last is noted beside the lock and looked at
        first next time (or `expected`, if given): finding it by a scan of
        every loop device made a warm attach 25% slower with 200 of them."""
        locked = self.lock.fd is not None
        noted = _read_note(self.device_note) if locked else None
        device = loopdev.find(self.path, info, expected or noted, self.mount.path,
                              self.settings.node_name)
        if device and device != noted and locked:
            _write_note(self.device_note, device)
        return device


def _read_note(path):
    try:
        with open(path) as handle:
            noted = handle.read(64).strip()
    except OSError:
        return None
    return noted if noted.startswith("/dev/loop") and noted[9:].isdigit() else None


def _write_note(path, device):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, device.encode() + b"\n")
    finally:
        os.close(fd)


class Using:
    """Holds a disk's volume mounted and the disk locked for a with-block."""

    def __init__(self, disk, unmount_after=False):
        self.disk = disk
        self.unmount_after = unmount_after

    def __enter__(self):
        self.disk.mount.acquire()
        try:
            self.disk.lock.acquire()
        except BaseException:
            self.disk.mount.release()
            raise
        return self.disk

    def __exit__(self, *exc):
        self.disk.lock.release()
        self.disk.mount.release(unmount_if_unused=self.unmount_after)
