"""generations: the host side of generations.asm, a KVM guest that writes a
verifiable stream, to prove point-in-time snapshots of a running VM's disk.

The guest writes generation g = 1, 2, ... over BLOCKS blocks of 64 sectors,
block BLOCKS-1 first, block 0 last; every sector says "GENW", g, its block and
its index in the block. A copy taken at one instant therefore holds, in write
order, g...g then g-1...g-1 (or all g). verdict() says whether a copy is that,
or torn.

    python3 tests/e2e/generations.py IMAGE   # exit 0: one instant, 1: torn
"""

import mmap
import os
import stat
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "generations.asm")

# The layout; must match generations.asm.
SECTOR = 512
SECTORS = 64                     # per block: 32 KiB
BLOCK = SECTORS * SECTOR
BLOCKS = 256                     # 8 MiB...
FIRST_LBA = 2048                 # ...from 1 MiB
STATUS_LBA = 1024
DISK_SIZE = 16 * 1024 * 1024     # what the guest is meant to run on
WRITE_MAGIC = b"GENW"
STATUS_MAGIC = b"GENS"

# What read_blocks() says of a block that is not one generation.
NEVER = 0                        # all zeros: never written (generation 0)
MIXED = "mixed"                  # ours, but sectors of different generations
FOREIGN = "foreign"              # not ours: another pattern, wrong block or index


def assemble(out_path):
    """The guest's boot sector (512 bytes, for LBA 0), made with nasm
    (tests/e2e/run installs it); also written to out_path."""
    subprocess.run(["nasm", "-f", "bin", SOURCE, "-o", out_path], check=True)
    with open(out_path, "rb") as f:
        sector0 = f.read()
    assert len(sector0) == SECTOR and sector0.endswith(b"\x55\xaa"), "generations.asm: not a boot sector"
    return sector0


def read(path, offset, length, direct=None):
    """length bytes at offset. With O_DIRECT (the default for a block device)
    into an aligned (mmap) buffer, so that what is read is on the disk now,
    not in the page cache or read ahead earlier; else plainly. offset and
    length: multiples of 4096."""
    if direct is None:
        direct = stat.S_ISBLK(os.stat(path).st_mode)
    if not direct:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        return data.ljust(length, b"\0")  # a short (sparse-ended) file reads as zeros
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buffer = mmap.mmap(-1, length)
    try:
        done = 0
        while done < length:
            with memoryview(buffer)[done:] as view:
                n = os.preadv(fd, [view], offset + done)
            if n <= 0:
                break
            done += n
        return bytes(buffer)
    finally:
        os.close(fd)
        buffer.close()


def progress(path, direct=None):
    """The last generation the guest completed (its status sector), or None
    if the guest has not written it yet."""
    sector = read(path, STATUS_LBA * SECTOR, 4096, direct)[:SECTOR]  # LBA 1024: 4 KiB-aligned
    if sector[:4] != STATUS_MAGIC:
        return None
    return struct.unpack_from("<I", sector, 4)[0]


def block_generation(data, b):
    """The generation of block b, from its 32 KiB: an int (NEVER for zeros),
    MIXED or FOREIGN."""
    if data.count(0) == len(data):
        return NEVER
    found = set()
    for index in range(SECTORS):
        magic, g, block, sector_index = struct.unpack_from("<4sIII", data, index * SECTOR)
        if magic != WRITE_MAGIC:
            # A sector still zero next to written ones: written in part.
            if data[index * SECTOR:(index + 1) * SECTOR].count(0) == SECTOR:
                found.add(NEVER)
                continue
            return FOREIGN
        if block != b or sector_index != index:
            return FOREIGN
        found.add(g)
    return found.pop() if len(found) == 1 else MIXED


def read_blocks(path, direct=None):
    """Per block 0..BLOCKS-1, its generation (see block_generation)."""
    region = read(path, FIRST_LBA * SECTOR, BLOCKS * BLOCK, direct)
    return [block_generation(region[b * BLOCK:(b + 1) * BLOCK], b) for b in range(BLOCKS)]


@dataclass
class Verdict:
    one_instant: bool
    generation: object = None    # one instant: the newest generation held
    newest_blocks: int = 0       # one instant: how many blocks (from BLOCKS-1 down) hold it
    found: dict = field(default_factory=dict)  # generation (or marker) -> blocks holding it
    problem: str = ""            # torn: where and why
    blocks: int = BLOCKS         # how many blocks were judged

    def __str__(self):
        # generations in order, then the markers
        order = sorted(self.found, key=lambda g: (isinstance(g, str), g if isinstance(g, int) else 0, str(g)))
        counts = ", ".join(f"{g}: {self.found[g]}" for g in order)
        if self.one_instant:
            last = self.blocks - 1
            split = self.blocks - self.newest_blocks  # the first block, from last down, of g-1
            if split == 0:
                where = f"all {self.blocks} blocks at generation {self.generation}"
            else:
                where = (f"generation {self.generation} in blocks {last}..{split}, "
                         f"{self.generation - 1} in blocks {split - 1}..0")
            return f"one instant: {where}"
        label = "torn" if set(self.found) != {NEVER} else "not one instant"  # nothing written is not torn
        return f"{label}: {self.problem} (blocks per generation: {counts})"


def verdict(blocks):
    """Whether blocks (as read_blocks gives them, index = block number) are
    what the disk held at one moment: in write order (block BLOCKS-1 first)
    g...g then g-1...g-1, or all g, with g >= 1 (generation 0, never
    written, only as the g-1 of g = 1)."""
    found = {}
    for g in blocks:
        found[g] = found.get(g, 0) + 1
    for marker in (MIXED, FOREIGN):
        if marker in found:
            b = blocks.index(marker)
            return Verdict(False, found=found, blocks=len(blocks), problem=f"block {b} is {marker}"
                           + (" (sectors of different generations)" if marker == MIXED else " (not this guest's)"))
    newest = max(found)
    if newest == NEVER:
        return Verdict(False, found=found, blocks=len(blocks), problem="no block was ever written")
    # Walk in write order: only g and g-1, and once a block of g-1 is seen,
    # no g may follow. The first block that breaks this is reported.
    older_from = None
    for b in range(len(blocks) - 1, -1, -1):
        if blocks[b] not in (newest, newest - 1):
            return Verdict(False, found=found, blocks=len(blocks),
                           problem=(f"{len(found)} generations; block {b} holds {blocks[b]}, "
                                    f"where one instant holds only {newest} and {newest - 1}"))
        if blocks[b] == newest - 1 and older_from is None:
            older_from = b
        elif blocks[b] == newest and older_from is not None:
            return Verdict(False, found=found, blocks=len(blocks),
                           problem=(f"block {b} holds generation {newest} but block {older_from}, written before it, "
                                    f"holds {newest - 1}: the order breaks at block {b}"))
    return Verdict(True, generation=newest, newest_blocks=found[newest], found=found, blocks=len(blocks))


def paced_copy(source, target, seconds=0):
    """Copy source front to back in 32 KiB reads spread over seconds. The
    reads are O_DIRECT: each one is what the disk holds as it is made (a
    plain read may be served from a read-ahead made earlier: megabytes)."""
    chunks = size_of(source) // BLOCK
    started = time.monotonic()
    with open(target, "wb") as dst:
        for i in range(chunks):
            delay = started + seconds * i / chunks - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            dst.write(read(source, i * BLOCK, BLOCK, direct=True))
    return time.monotonic() - started


def size_of(path):
    """The size of a file or a block device."""
    with open(path, "rb") as f:
        return f.seek(0, os.SEEK_END)


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} IMAGE (a copy of the disk of a generations.asm guest)", file=sys.stderr)
        return 2
    print(f"guest's last completed generation: {progress(argv[1])}")
    result = verdict(read_blocks(argv[1]))
    print(result)
    return 0 if result.one_instant else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
