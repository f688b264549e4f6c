#!/usr/bin/python3
"""Writes numbered 1 MiB blocks of seeded random data to a device with O_DIRECT.

  writer.py DEVICE FIRST COUNT SEED [PAUSE_SECONDS]

Prints "ok N" after block N is acknowledged (the write returned), and
"error ERRNO STRERROR" and exits 3 at the first failed write.
"""

import mmap
import os
import random
import sys
import time

BLOCK = 1 << 20


def block(seed, index):
    return random.Random(seed * 1_000_003 + index).randbytes(BLOCK)


def main(device, first, count, seed, pause=0.0):
    fd = os.open(device, os.O_WRONLY | os.O_DIRECT)
    buffer = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT needs
    for index in range(first, first + count):
        buffer.seek(0)
        buffer.write(block(seed, index))
        try:
            os.pwrite(fd, buffer, index * BLOCK)
        except OSError as exc:
            print(f"error {exc.errno} {exc.strerror}", flush=True)
            return 3
        print(f"ok {index}", flush=True)
        if pause:
            time.sleep(pause)
    os.close(fd)
    return 0


if __name__ == "__main__":
    device, first, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    sys.exit(main(device, first, count, seed, float(sys.argv[5]) if len(sys.argv) > 5 else 0.0))
