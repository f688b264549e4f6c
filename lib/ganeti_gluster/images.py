"""Disk image files on the mounted volume.

The volume is untrusted: other hosts write it. So nothing here follows a
symbolic link: images are looked at with lstat, opened with O_NOFOLLOW, their
xattrs read and written without following, and each directory between the
mount and the images must be a real directory. Anything that is not a
regular file is refused, naming the path. Each public function here runs in
the FUSE worker, within io_timeout: a hung client must not hang the script.

A disk never appears under its final name half-made: it is built under a
hidden temporary name and hard-linked into place, which fails rather than
replace a disk that appeared meanwhile.
"""

import errno
import os
import stat
import time

from . import diag, procfs, sparse_copy
from .errors import ProviderError, TransientError
from .fuse_worker import heartbeat, isolated, orphaned

MIB = 1 << 20
CHUNK = 4 * MIB
_ZEROS = bytes(CHUNK)
XATTR_PREFIX = "user.ganeti-gluster."
METADATA_XATTR = XATTR_PREFIX + "metadata"
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def partial_path(path):
    """Where `path` is built before it appears; hidden, so never a disk name."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.partial")


def _not_a_disk(path, info):
    kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
    return ProviderError(f"{path} is {kind}, not a disk image made by this provider; "
                         "refusing to use it")


def _lstat(path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        kind = TransientError if exc.errno in (errno.ENOTCONN, errno.EIO) else ProviderError
        raise kind(f"cannot look at {path}: {exc.strerror}") from None


def stat_image(path):
    """lstat of the disk, or None if there is none; refuses anything but a
    regular file."""
    info = _lstat(path)
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise _not_a_disk(path, info)
    return info


@isolated("looking at")
def find_image(mount_point, directory, name):
    """lstat of <mount_point>/<directory>/<name>, or None if there is none;
    refuses a symlink or anything else that is not a regular file, in the
    image or on the way to it. One touch of the worker: attach runs it
    constantly."""
    if not check_directory(mount_point, directory):
        return None
    return stat_image(os.path.join(mount_point, directory, name))


@isolated("making the directory")
def make_directory(mount_point, directory):
    check_directory(mount_point, directory, True)


def check_directory(mount_point, directory, create=False):
    """Whether <mount_point>/<directory> exists, every step of it a real
    directory (a symlink there could lead anywhere on this node); with
    create, missing steps are made."""
    path = mount_point
    for part in directory.split("/"):
        path = os.path.join(path, part)
        info = _lstat(path)
        if info is None:
            if not create:
                return False
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass  # made by another node meanwhile: looked at below
            info = _lstat(path)
        if info is None or not stat.S_ISDIR(info.st_mode):
            kind = "a symbolic link" if info and stat.S_ISLNK(info.st_mode) else "not a directory"
            raise ProviderError(f"{path} is {kind}; the images' directory must be a real "
                                "directory on the volume")
    return True


def _open_image(path, flags):
    """An fd of the regular file at `path`, never through a symlink."""
    try:
        fd = os.open(path, flags | _NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ProviderError(f"{path} is a symbolic link, not a disk image made by this "
                                "provider; refusing to use it") from None
        raise ProviderError(f"cannot open {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _not_a_disk(path, info)
    return fd


def _publish(temporary, fd, path):
    """Links the finished partial file into place without ever replacing a
    disk. A worker whose script was killed goes on until its next chunk; by
    then a new run may hold the disk's lock and have made the partial file
    its own: so an orphan publishes nothing, and the partial file must still
    be the one open as fd."""
    heartbeat()  # a build whose script is gone is abandoned here
    if not _is_ours(temporary, fd):
        raise ProviderError(f"{temporary} was replaced while it was being made; left it alone")
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise ProviderError(f"{path} appeared while it was being made; left it alone") from None


def _is_ours(path, fd):
    """Whether `path` is the very file open as fd."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (info.st_dev, info.st_ino) == (mine.st_dev, mine.st_ino)


def _unlink_if_ours(path, fd):
    """Removes the partial file at `path` if it is still the one open as fd."""
    if _is_ours(path, fd):
        _unlink_quietly(path)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


_FRESH_SECONDS = 10
_last_touch = 0.0


def _still_building(fd):
    """Once per chunk of a long fill or copy: tells the script it goes on
    (heartbeat), and keeps the partial file's mtime fresh even across long
    holes, since ganeti-gluster orphans takes a partial file untouched for
    60 s as a leftover."""
    global _last_touch
    heartbeat()
    if time.monotonic() - _last_touch > _FRESH_SECONDS:
        _last_touch = time.monotonic()
        os.utime(fd)


def _build(path, fill):
    """Runs fill(fd) on a fresh hidden file, then publishes it as `path`."""
    temporary = partial_path(path)
    _unlink_quietly(temporary)  # left by an interrupted run on this disk
    # O_EXCL: a symlink put there meanwhile makes this fail, never followed
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    try:
        fill(fd)
        os.fsync(fd)
        _publish(temporary, fd, path)
    finally:
        # An orphan leaves the partial file alone: the disk's lock went with
        # its script, and on GlusterFS an unlinked file's fstat can answer
        # with the file that now has its name. The next run, or orphans,
        # removes a leftover.
        if not orphaned():
            _unlink_if_ours(temporary, fd)
        os.close(fd)


@isolated("creating")
def create(path, size_bytes, preallocation):
    _build(path, lambda fd: _extend(fd, 0, size_bytes, preallocation, "creating"))


def _extend(fd, start, end, preallocation, label):
    """Makes the file [start, end) long, allocated as asked."""
    try:
        if preallocation == "falloc":
            os.posix_fallocate(fd, start, end - start)
        elif preallocation == "full":
            _write_zeros(fd, start, end, label)
        os.ftruncate(fd, end)
    except OSError as exc:
        raise ProviderError(f"{label} the image failed: {exc.strerror}") from None


def _write_zeros(fd, start, end, label):
    offset = start
    progress = diag.Progress(label, end - start)
    while offset < end:
        offset += os.pwrite(fd, _ZEROS[:min(CHUNK, end - offset)], offset)
        _still_building(fd)
        progress.update(offset - start)
    progress.done()


@isolated("growing")
def grow(path, new_size_bytes, preallocation):
    fd = _open_image(path, os.O_WRONLY)
    try:
        current = os.fstat(fd).st_size
        if new_size_bytes < current:
            raise ProviderError(f"refusing to shrink {os.path.basename(path)} from "
                                f"{current // MIB} MiB to {new_size_bytes // MIB} MiB")
        if new_size_bytes > current:
            _extend(fd, current, new_size_bytes, preallocation, "growing")
            os.fsync(fd)
    finally:
        os.close(fd)


@isolated("snapshotting")
def snapshot(source, target):
    """A copy of `source` as `target` in which holes stay holes."""
    fd = _open_image(source, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        _build(target, lambda target_fd: sparse_copy.copy(fd, target_fd, size, _still_building))
    finally:
        os.close(fd)


@isolated("snapshotting through QEMU")
def snapshot_through_qemu(target, qemu_pid, socket_path, node, size, io_timeout, zeros_allocated):
    """A point-in-time copy, by a backup job of the running QEMU `qemu_pid`,
    of its block node `node` (`size` bytes), as `target`. zeros_allocated:
    the job writes the disk's holes as allocated zeros, to be punched again
    (QEMU's gluster driver reports holes; the loop device does not, so its
    zeros reach the target as data that detect-zeroes=unmap leaves holes)."""
    from . import qmp

    def fill(fd):
        os.ftruncate(fd, size)  # a backup target must have the disk's size
        qmp.backup(procfs.path_of_process(qemu_pid, socket_path), node, fd, io_timeout,
                   lambda: _still_building(fd))
        if zeros_allocated:
            sparse_copy.punch_zeros(fd, size, _still_building)

    _build(target, fill)


@isolated("removing")
def remove(path):
    _unlink_quietly(partial_path(path))
    _unlink_quietly(path)


@isolated("renaming")
def rename(path, new_path):
    """Renames without ever replacing an existing disk. A rename cut short
    between its two steps left both names on one file: a second run finishes
    it. Returns what it did."""
    try:
        os.link(path, new_path)
    except FileExistsError:
        old, new = stat_image(path), stat_image(new_path)
        if not (old and new and (old.st_dev, old.st_ino) == (new.st_dev, new.st_ino)):
            raise ProviderError(f"{os.path.basename(new_path)} already exists; not renaming "
                                f"{os.path.basename(path)} over it") from None
        os.unlink(path)
        return "finished an interrupted rename"
    os.unlink(path)
    return "renamed"


# -- xattrs, never through a symlink (user.* xattrs cannot be set on one) -----

def xattr(function, path, *args):
    """An xattr call on `path` itself, never through a symlink."""
    return function(path, *args, follow_symlinks=False)


@isolated("setting metadata on")
def set_metadata(path, value):
    xattr(os.setxattr, path, METADATA_XATTR, value.encode())


@isolated("reading metadata of")
def get_metadata(path):
    try:
        return xattr(os.getxattr, path, METADATA_XATTR).decode()
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise
