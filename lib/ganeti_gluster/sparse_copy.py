"""A copy of a disk image in which holes stay holes: data segments found
with SEEK_DATA/SEEK_HOLE where the volume supports them, and zero blocks
inside them skipped too."""

import errno
import fcntl
import mmap
import os

from . import diag
from .errors import ProviderError

MIB = 1 << 20
# Reads go into one reused 1 MiB buffer: fresh 4 MiB bytes objects cost a
# page fault per page, which on two cores slows the FUSE client beside us.
# Zeros are skipped, and stay holes, 1 MiB at a time.
COPY_CHUNK = 1 * MIB
_ZEROS = bytes(COPY_CHUNK)
# The largest O_DIRECT write: runs of data chunks gathered (see _Writer).
DIRECT_BATCH = 4 * MIB
# What O_DIRECT asks of an offset and a length.
_DIRECT_ALIGN = 4096


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
    writer = _Writer(dst_fd)
    try:
        if segments is None:
            _copy_skipping_zeros(src_fd, writer, 0, size, buffer, progress, on_chunk)
        else:
            # Plain reads and writes: on FUSE they beat copy_file_range (measured
            # 0.165 s against 0.24 s for 64 MiB), and zero blocks stay holes.
            for start, end in segments:
                _copy_skipping_zeros(src_fd, writer, start, end, buffer, progress, on_chunk)
        writer.close()
    finally:
        writer.release()
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


class _Writer:
    """Writes the copy with O_DIRECT where the file system takes it: on a
    GlusterFS FUSE mount the kernel sends one 4 MiB O_DIRECT write to the
    client as parallel requests, a buffered one piece by piece (1 GiB into a
    replica-3 volume, fsync included: 7.9 s against 12.2 s). Consecutive
    data chunks are gathered into one aligned buffer of up to DIRECT_BATCH
    and written at once; a piece that is not aligned (the tail of an
    odd-sized image) is written buffered. The fsync before the copy is
    published stays: O_DIRECT alone does not flush the bricks' disks."""

    def __init__(self, fd):
        self.fd, self.flags = fd, fcntl.fcntl(fd, fcntl.F_GETFL)
        self.start = self.length = 0  # what is gathered, not yet written
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, self.flags | os.O_DIRECT)
            self.batch = mmap.mmap(-1, DIRECT_BATCH)  # page-aligned
        except OSError:  # a file system without O_DIRECT
            self.batch = None

    def write(self, data, offset):
        aligned = offset % _DIRECT_ALIGN == 0 and len(data) % _DIRECT_ALIGN == 0
        if self.batch is not None and aligned:
            if self.length and (offset != self.start + self.length or self.length + len(data) > DIRECT_BATCH):
                self._flush()
            if not self.length:
                self.start = offset
            self.batch[self.length:self.length + len(data)] = data
            self.length += len(data)
        else:
            self.close()
            _write_all(self.fd, data, offset)

    def _flush(self):
        view = memoryview(self.batch)
        try:
            done = os.pwrite(self.fd, view[:self.length], self.start)
            if done < self.length:  # short: the rest buffered
                fcntl.fcntl(self.fd, fcntl.F_SETFL, self.flags)
                _write_all(self.fd, view[done:self.length], self.start + done)
                fcntl.fcntl(self.fd, fcntl.F_SETFL, self.flags | os.O_DIRECT)
        finally:
            view.release()
        self.length = 0

    def close(self):
        """Writes what is gathered; from here on, buffered writes."""
        if self.batch is not None and self.length:
            self._flush()
        self.release()

    def release(self):
        """The fd's flags as they were, the buffer freed; writes nothing."""
        if self.batch is not None:
            fcntl.fcntl(self.fd, fcntl.F_SETFL, self.flags)
            self.batch.close()
            self.batch = None


def _copy_skipping_zeros(src_fd, writer, start, end, buffer, progress, on_chunk):
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
            writer.write(view[:count], offset)
        offset += count
        on_chunk(writer.fd)
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
