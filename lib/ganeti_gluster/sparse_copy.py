"""A copy of a disk image in which holes stay holes: data segments found
with SEEK_DATA/SEEK_HOLE where the volume supports them, and zero blocks
inside them skipped too."""

import errno
import os

from . import diag
from .errors import ProviderError

MIB = 1 << 20
# Reads go into one reused 1 MiB buffer: fresh 4 MiB bytes objects cost a
# page fault per page, which on two cores slows the FUSE client beside us.
COPY_CHUNK = 1 * MIB
_ZEROS = bytes(COPY_CHUNK)


def copy(src_fd, dst_fd, size, on_chunk=lambda dst_fd: None):
    """Copies `size` bytes of src_fd to dst_fd; on_chunk(dst_fd) after each chunk."""
    progress = diag.Progress("copying", size)
    try:
        segments = list(_data_segments(src_fd, size))
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP):
            raise
        segments = None  # the volume cannot tell holes from data: look at the bytes
    buffer = bytearray(COPY_CHUNK)
    if segments is None:
        _copy_skipping_zeros(src_fd, dst_fd, 0, size, buffer, progress, on_chunk)
    else:
        # Plain reads and writes: on FUSE they beat copy_file_range (measured
        # 0.165 s against 0.24 s for 64 MiB), and zero blocks stay holes.
        for start, end in segments:
            _copy_skipping_zeros(src_fd, dst_fd, start, end, buffer, progress, on_chunk)
    os.ftruncate(dst_fd, size)
    progress.update(size)  # the holes after the last data count as copied
    progress.done()


def _data_segments(fd, size):
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        offset = end


def _copy_skipping_zeros(src_fd, dst_fd, start, end, buffer, progress, on_chunk):
    view, zeros = memoryview(buffer), memoryview(_ZEROS)
    offset = start
    while offset < end:
        count = os.preadv(src_fd, [view[:min(len(buffer), end - offset)]], offset)
        if not count:
            raise ProviderError("the source image shrank during the copy")
        # bytearray against memoryview compares with memcmp; two memoryviews
        # would compare byte by byte, 70 times slower on zeros
        data = buffer if count == len(buffer) else buffer[:count]
        if data != zeros[:count]:
            _write_all(dst_fd, view[:count], offset)
        offset += count
        on_chunk(dst_fd)
        if progress:
            progress.update(offset)


def _write_all(fd, data, offset):
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


_PUNCH_HOLE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


def punch_zeros(fd, size, on_chunk=lambda fd: None):
    """Turns every all-zero chunk of the file back into a hole (QEMU's backup
    job writes the zeros its gluster driver reports as allocated zeros)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    buffer = bytearray(COPY_CHUNK)
    progress = diag.Progress("making holes", size)
    offset, run_start = 0, None
    while offset <= size:
        count = os.preadv(fd, [buffer], offset) if offset < size else 0
        zero = count and buffer[:count] == _ZEROS[:count]
        if zero and run_start is None:
            run_start = offset
        elif not zero and run_start is not None:
            if libc.fallocate(fd, _PUNCH_HOLE, ctypes.c_int64(run_start),
                              ctypes.c_int64(offset - run_start)) != 0:
                error = ctypes.get_errno()
                raise OSError(error, os.strerror(error))
            run_start = None
        if not count:
            break
        offset += count
        on_chunk(fd)
        progress.update(offset)
    progress.done()
