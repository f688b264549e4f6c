"""The image directory of a mounted volume, read without following anything
the volume says.

Anyone who can write the volume can put a symbolic link (to a node-local
file or directory), a fifo or a device where a disk or the image directory
should be; ganeti-gluster runs as root. So the directory is opened one path
component at a time with O_NOFOLLOW (each checked with lstat first, for a
clear message), every entry is looked at with lstat relative to that open
directory, and xattrs are read only from regular files, without following
a link that may have replaced one since.
"""

import contextlib
import errno
import os
import re
import stat
import time

from .. import diag, images, open_records
from ..errors import ProviderError

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# images.partial_path: ".<disk>.partial", made by a create or snapshot and
# renamed into place when complete; one left behind is a crash's leftover.
PARTIAL = re.compile(r"^\.(?P<disk>[^/]+)\.partial$")


def kind(info):
    """What a file is, in words."""
    for test, word in ((stat.S_ISREG, "a regular file"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISCHR, "a character device")):
        if test(info.st_mode):
            return word
    return "not a regular file"


def age_seconds(info):
    """Seconds since the file was last written (never negative)."""
    return max(0, int(time.time() - info.st_mtime))


class ImageDirectory:
    """`<mount>/<dir>`, held open; fd is None when it does not exist."""

    def __init__(self, mount_path, directory):
        self.path = os.path.join(mount_path, directory)
        self.fd = os.open(mount_path, _DIRECTORY_FLAGS)
        walked = mount_path
        try:
            for component in directory.split("/"):
                walked = os.path.join(walked, component)
                if not self._descend(component, walked):
                    os.close(self.fd)
                    self.fd = None
                    return
        except BaseException:
            if self.fd is not None:
                os.close(self.fd)
            raise

    def _descend(self, component, walked):
        """Moves self.fd one directory down; False if it does not exist."""
        try:
            info = os.lstat(component, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(info.st_mode):
            raise ProviderError(self.refusal(walked, info))
        try:
            child = os.open(component, _DIRECTORY_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            # replaced since the lstat
            raise ProviderError(f"{walked} is not a directory any more; not following it") from None
        os.close(self.fd)
        self.fd = child
        return True

    def refusal(self, path, info):
        what = kind(info)
        if stat.S_ISLNK(info.st_mode):
            try:
                what += f" (to {os.readlink(os.path.basename(path), dir_fd=self.fd)})"
            except OSError:
                pass
        return f"{path} is {what}, not a directory: refusing to follow it"

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def names(self):
        return sorted(os.listdir(self.fd)) if self.fd is not None else []

    def entry(self, name):
        """lstat of `name`, or None if there is none."""
        if self.fd is None:
            return None
        try:
            return os.lstat(name, dir_fd=self.fd)
        except FileNotFoundError:
            return None

    def image(self, name):
        """lstat of the regular file `name`; None (with a warning naming it)
        when it is anything else, or None when it is gone."""
        info = self.entry(name)
        if info is None:
            return None
        if not stat.S_ISREG(info.st_mode):
            diag.warn(f"{os.path.join(self.path, name)} is {kind(info)}, not a disk image: skipped")
            return None
        return info

    def images(self):
        """{name: lstat} of every disk image: the regular files not hidden."""
        found = {}
        for name in self.names():
            if not name.startswith("."):
                info = self.image(name)
                if info is not None:
                    found[name] = info
        return found

    def partials(self):
        """One dict per hidden .<disk>.partial regular file."""
        found = []
        for name in self.names():
            match = PARTIAL.match(name)
            info = self.image(name) if match else None
            if info is not None:
                found.append({"name": name, "disk": match.group("disk"), "size": info.st_size,
                              "allocated": info.st_blocks * 512,
                              "age_seconds": age_seconds(info)})
        return found

    def holds_any_file(self):
        """Whether any regular file (a disk, or one being made) is here."""
        for name in self.names():
            info = self.entry(name)
            if info is not None and stat.S_ISREG(info.st_mode):
                return True
        return False

    # -- xattrs: read from the entry itself, never through a link --------------

    def _entry(self, name):
        """A path to `name` that does not depend on the directory's own path
        (which the volume could change under us)."""
        return f"/proc/self/fd/{self.fd}/{name}"

    def metadata(self, name):
        try:
            return os.getxattr(self._entry(name), images.METADATA_XATTR,
                               follow_symlinks=False).decode()
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                return None
            raise

    def open_modes(self, name):
        """{node: mode} of the open records on `name`."""
        path, records = self._entry(name), {}
        for key in os.listxattr(path, follow_symlinks=False):
            if key.startswith(open_records.OPEN_XATTR_PREFIX):
                try:
                    value = os.getxattr(path, key, follow_symlinks=False).decode()
                except OSError:
                    continue  # removed meanwhile
                records[key[len(open_records.OPEN_XATTR_PREFIX):]] = value.partition(" ")[0]
        return records

    def unlink_regular(self, name, expected):
        """Removes `name` if it is still the regular file `expected` (lstat)."""
        info = self.entry(name)
        if info is None or not stat.S_ISREG(info.st_mode) \
                or (info.st_dev, info.st_ino) != (expected.st_dev, expected.st_ino):
            raise ProviderError(f"{os.path.join(self.path, name)} changed meanwhile; left alone")
        os.unlink(name, dir_fd=self.fd)


@contextlib.contextmanager
def opened(ctx):
    """The volume mounted and held, and its image directory open."""
    mount = ctx.mount()
    path = mount.acquire()
    try:
        directory = ImageDirectory(path, ctx.settings.dir)
        try:
            yield directory
        finally:
            directory.close()
    finally:
        mount.release(unmount_if_unused=True)
