"""generations: a KVM guest (generations.asm) writes a verifiable stream to its
disk; the verifier (generations.py) must call a copy taken while it writes
torn, and a copy taken while the VM is paused one instant. The proof that
the verifier can tell, before it is trusted with a QEMU backup job's snapshots.

Needs /dev/kvm, qemu-system-x86_64 and nasm (tests/e2e/run installs them); no
Ganeti, no GlusterFS. A missing /dev/kvm is a failure, not a skip.
    /usr/bin/python3 -m pytest -q -rP -p no:cacheprovider tests/e2e/test_generations.py
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import generations  # noqa: E402
from generations import BLOCKS, MIXED, NEVER, FOREIGN, verdict  # noqa: E402

START_TIMEOUT = 30      # s, for the guest to complete generation 3
COPY_SECONDS = 2.0      # the live copy's pace: a big disk copied at real speed


class Qmp:
    """Just enough QMP: the greeting, qmp_capabilities, argument-less commands."""

    def __init__(self, path, timeout=10):
        deadline = time.monotonic() + timeout
        while True:  # QEMU makes the socket as it starts
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.file = self.sock.makefile("rwb")
        assert "QMP" in json.loads(self.file.readline())
        self.command("qmp_capabilities")

    def command(self, name):
        self.file.write(json.dumps({"execute": name}).encode() + b"\n")
        self.file.flush()
        while True:  # events (STOP, RESUME) may come before the reply
            reply = json.loads(self.file.readline())
            if "error" in reply:
                raise RuntimeError(f"QMP {name}: {reply['error']}")
            if "return" in reply:
                return reply["return"]

    def close(self):
        self.file.close()
        self.sock.close()


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    """A running generations.asm guest, booted by SeaBIOS from virtio-blk as
    Ganeti 3.0 starts one, past generation 3: (disk path, Qmp, work dir)."""
    assert os.access("/dev/kvm", os.R_OK | os.W_OK), "/dev/kvm is missing or not usable: KVM is needed"
    work = tmp_path_factory.mktemp("generations")
    disk = str(work / "disk.img")
    with open(disk, "wb") as f:
        # Zeros, not a sparse file: the guest's first generation then runs
        # as fast as the rest (no block allocation under its O_DIRECT writes).
        f.write(bytes(generations.DISK_SIZE))
        f.seek(0)
        f.write(generations.assemble(str(work / "generations.bin")))
    qmp_path = str(work / "qmp.sock")
    with open(work / "qemu.log", "wb") as log:
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-enable-kvm", "-nodefaults", "-display", "none", "-m", "64",
             "-drive", f"file={disk},format=raw,if=none,id=d0,cache=none,aio=threads",
             "-device", "virtio-blk-pci,drive=d0,bootindex=0",
             "-qmp", f"unix:{qmp_path},server=on,wait=off"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    qmp = None
    try:
        try:
            qmp = Qmp(qmp_path)
        except OSError as e:
            raise AssertionError(f"no QMP ({e}); QEMU said: {(work / 'qemu.log').read_text()}")
        started = time.monotonic()
        while status(disk) < 3:
            assert qemu.poll() is None, f"QEMU exited: {(work / 'qemu.log').read_text()}"
            assert time.monotonic() - started < START_TIMEOUT, \
                f"the guest did not complete generation 3 in {START_TIMEOUT} s (at {status(disk)})"
            time.sleep(0.05)
        print(f"guest at generation 3 after {time.monotonic() - started:.2f} s")
        yield disk, qmp, work
    finally:
        if qmp:
            qmp.close()
        qemu.kill()  # our own QEMU, by its PID
        qemu.wait()
        shutil.rmtree(work, ignore_errors=True)


def status(disk):
    """The guest's last completed generation (0: none yet), read past the
    page cache: the disk is being written with O_DIRECT."""
    return generations.progress(disk, direct=True) or 0


def test_copy_while_writing_is_torn(guest):
    disk, _, work = guest
    copy = str(work / "live.img")
    before, t0 = status(disk), time.monotonic()
    took = generations.paced_copy(disk, copy, COPY_SECONDS)
    after, t1 = status(disk), time.monotonic()
    rate = (after - before) / (t1 - t0)
    result = verdict(generations.read_blocks(copy))
    seen = sorted(g for g in result.found if isinstance(g, int))
    print(f"live copy in {took:.2f} s; guest {before} -> {after}, {rate:.1f} generations/s; "
          f"the copy holds {len(seen)} generations ({seen[0]}..{seen[-1]}); {result}")
    # Torn is only proven if the guest wrote on through the copy.
    assert after - before >= 2, f"the guest completed only {after - before} generations during the copy"
    # The copy reads the 8 MiB region in about 1 s, the guest writing it the
    # other way round: at a generation per second or less, a live copy could
    # hold two adjacent generations in the order one instant holds them.
    assert not result.one_instant, f"{result} (guest at {rate:.1f} generations/s)"


def test_copy_while_paused_is_one_instant(guest):
    disk, qmp, work = guest
    copy = str(work / "paused.img")
    for pause in range(3):  # three pauses: three split points
        time.sleep(0.1 * pause)
        qmp.command("stop")  # returns once the guest's in-flight writes are done
        try:
            assert qmp.command("query-status")["running"] is False
            done = status(disk)
            generations.paced_copy(disk, copy)
        finally:
            qmp.command("cont")
        result = verdict(generations.read_blocks(copy))
        print(f"paused copy {pause + 1}: status says {done} completed; {result}")
        assert result.one_instant, str(result)
        # The copy's newest generation: the one in progress, or (paused
        # between block 0 and the status sector, or right after it) the last.
        if result.newest_blocks < BLOCKS:
            assert result.generation == done + 1
        else:
            assert result.generation in (done, done + 1)
    # And the guest writes on after cont.
    deadline = time.monotonic() + 5
    while status(disk) <= done:
        assert time.monotonic() < deadline, "the guest did not resume after cont"
        time.sleep(0.05)


def split(g, newer, total=BLOCKS):
    """What the disk holds at one instant: blocks total-1 .. total-newer at g
    (written first), the rest at g-1; index = block number."""
    return [g - 1] * (total - newer) + [g] * newer


@pytest.mark.parametrize("newer", [0, 1, 2, 128, 255, 256])
def test_verdict_one_instant_at_any_split(newer):
    result = verdict(split(7, newer))
    assert result.one_instant, str(result)
    expected = 7 if newer else 6  # no block of 7 yet: all of 6, an instant between generations
    assert result.generation == expected
    assert result.newest_blocks == (newer or BLOCKS)


def test_verdict_first_generation_over_never_written():
    result = verdict(split(1, 100))
    assert result.one_instant and result.generation == 1 and result.found == {1: 100, NEVER: 156}
    assert "generation 1 in blocks 255..156, 0 in blocks 155..0" in str(result)
    # Never written is allowed only as the g-1 of g = 1.
    assert not verdict(split(2, 100)[:-1] + [NEVER]).one_instant
    assert not verdict([NEVER] * 100 + [2] * 156).one_instant
    empty = verdict([NEVER] * BLOCKS)
    assert not empty.one_instant and "no block was ever written" in empty.problem


def test_verdict_mixed_or_foreign_block():
    blocks = split(5, 10)
    blocks[200] = MIXED
    result = verdict(blocks)
    assert not result.one_instant and "block 200 is mixed" in result.problem
    blocks[200] = FOREIGN
    assert "block 200 is foreign" in verdict(blocks).problem


def test_verdict_three_generations():
    blocks = [3] * 50 + [4] * 100 + [5] * 106
    result = verdict(blocks)
    assert not result.one_instant
    assert result.found == {3: 50, 4: 100, 5: 106}
    assert "block 49 holds 3" in result.problem  # the first, in write order, not 5 or 4
    # Two generations, but not adjacent.
    assert not verdict([3] * 128 + [5] * 128).one_instant


def test_verdict_out_of_order_split():
    # g-1 written first (high blocks), g after: not a state the guest passes through.
    blocks = [8] * 100 + [7] * 156
    result = verdict(blocks)
    assert not result.one_instant
    assert "the order breaks at block 99" in result.problem
    # g, then g-1, then g again.
    blocks = split(8, 100)
    blocks[10] = 8
    assert "the order breaks at block 10" in verdict(blocks).problem


def test_block_generation_reads_sectors():
    """read_blocks' per-block decoding, on a block laid out as the guest writes it."""
    import struct

    def block(b, gens):
        return b"".join(struct.pack("<4sIII", b"GENW", g, b, i).ljust(512, b"\xa5") for i, g in enumerate(gens))

    assert generations.block_generation(block(9, [4] * 64), 9) == 4
    assert generations.block_generation(block(9, [4] * 32 + [3] * 32), 9) == MIXED
    assert generations.block_generation(block(9, [4] * 63) + bytes(512), 9) == MIXED  # written in part
    assert generations.block_generation(block(8, [4] * 64), 9) == FOREIGN  # another block's
    assert generations.block_generation(bytes(32768), 9) == NEVER
    assert generations.block_generation(b"\x01" * 32768, 9) == FOREIGN
