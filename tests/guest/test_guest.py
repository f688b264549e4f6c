"""The test guest (tests/guest/build) booted by a real QEMU: seqio's stream
survives a crash and its verifier catches a lost or misplaced block, fio
reports JSON, and the guest verifies its own disk.

QEMU runs with KVM, and a missing /dev/kvm fails the tests. GUEST_ACCEL=tcg
runs them under QEMU's emulator instead, for hosts whose /dev/kvm cannot run a
stock kernel at a usable speed (a nested "PVM" KVM, for one).
"""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ACCEL = os.environ.get("GUEST_ACCEL", "kvm")
BLOCK = 4096
BOOT_TIMEOUT_S = 60  # a boot takes about 1 s with KVM, 5 s under TCG
ACK = re.compile(r"^SEQIO ACK (\d+) (\d+)", re.M)


@pytest.fixture(scope="module")
def guest():
    """(kernel, initrd, host seqio), built or taken from the cache."""
    if ACCEL == "kvm":
        assert os.path.exists("/dev/kvm"), "/dev/kvm is missing: the guest tests need KVM (or GUEST_ACCEL=tcg)"
    built = subprocess.run([os.path.join(HERE, "build")], check=True, timeout=1800,
                           stdout=subprocess.PIPE, text=True).stdout.split("\n")
    return built[0], built[1], built[2]


@pytest.fixture(scope="module")
def workdir():
    # Not /tmp: QEMU's cache=none needs O_DIRECT, which a tmpfs refuses.
    path = tempfile.mkdtemp(prefix="guest-test-", dir="/var/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Guest:
    """One QEMU booting the test guest, its serial console in a file; always killed on leaving."""

    def __init__(self, guest, image, args):
        kernel, initrd, _ = guest
        self.log = image + ".serial"
        open(self.log, "w").close()
        self.qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", ACCEL, "-m", "256", "-nodefaults", "-display", "none", "-no-reboot",
             "-kernel", kernel, "-initrd", initrd,
             "-append", f"console=ttyS0 panic=-1 rootfstype=ramfs {args}",
             "-serial", f"file:{self.log}",
             "-drive", f"file={image},if=virtio,format=raw,cache=none"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def serial(self):
        with open(self.log, errors="replace") as f:
            return f.read().replace("\r\n", "\n")

    def wait_for(self, predicate, what, timeout=BOOT_TIMEOUT_S):
        """Polls the serial log until predicate(log) is true; the log's tail in the failure."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.serial()
            if predicate(log):
                return log
            if self.qemu.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"no {what} within {timeout} s (QEMU {'exited ' + str(self.qemu.returncode) if self.qemu.poll() is not None else 'running'})"
                    f"\n--- serial log tail ---\n{self.serial()[-3000:]}")

    def wait_exit(self, timeout=BOOT_TIMEOUT_S):
        """The job's end: its GG EXIT line, then QEMU's exit on the guest's poweroff."""
        log = self.wait_for(lambda text: "GG EXIT rc=" in text, "GG EXIT", timeout)
        self.qemu.wait(timeout=10)
        return log

    def kill(self):
        if self.qemu.poll() is None:
            self.qemu.send_signal(signal.SIGKILL)
        self.qemu.wait(timeout=10)


def new_image(workdir, name, blocks):
    path = os.path.join(workdir, name)
    with open(path, "wb") as f:
        f.truncate(blocks * BLOCK)
    return path


def verify(guest, image, *args):
    """(exit code, summary, stderr) of the host's seqio verify."""
    result = subprocess.run([guest[2], "verify", image, *args], capture_output=True, text=True, timeout=60)
    return result.returncode, json.loads(result.stdout), result.stderr


def write_block(image, index, data):
    with open(image, "r+b") as f:
        f.seek(index * BLOCK)
        f.write(data)


def read_block(image, index):
    with open(image, "rb") as f:
        f.seek(index * BLOCK)
        return f.read(BLOCK)


@pytest.fixture(scope="module")
def crashed(guest, workdir):
    """A 16 MiB disk the guest was writing when QEMU was killed, and its serial log."""
    image = new_image(workdir, "crashed.img", 4096)
    with Guest(guest, image, "gg.run=seqwrite gg.rate=200 gg.runid=4242") as vm:
        started = time.monotonic()
        vm.wait_for(lambda log: len(ACK.findall(log)) >= 100, "100 ACK lines")
        print(f"boot and 100 acks in {time.monotonic() - started:.1f} s")
        vm.kill()  # SIGKILL: a crash, whatever was in flight stays as the disk has it
        log = vm.serial()
    with open(image + ".acked", "w") as f:
        f.write(log)
    return image, image + ".acked", log


def test_acknowledged_writes_survive_a_crash(guest, crashed):
    image, acked_log, log = crashed
    acked = [int(seq) for seq, _ in ACK.findall(log)]
    assert acked == list(range(1, len(acked) + 1)), "acks out of order on the console"
    rc, summary, stderr = verify(guest, image, "--acked", acked_log)
    assert rc == 0, (summary, stderr)
    assert summary["ok"] and summary["run"] == 4242
    assert summary["acked"] == len(acked) > 0
    assert summary["verified"] >= summary["acked"]
    assert summary["last"] >= acked[-1]
    # 200 writes a second: consecutive writes ~5 ms apart in the guest's clock
    assert 0 < summary["max_gap_ms"] < 2000


def test_verify_names_a_lost_acknowledged_block(guest, crashed, workdir):
    image, acked_log, log = crashed
    acked = [int(seq) for seq, _ in ACK.findall(log)]
    for lost_seq in (acked[len(acked) // 2], acked[-1]):
        damaged = os.path.join(workdir, "damaged.img")
        shutil.copyfile(image, damaged)
        write_block(damaged, lost_seq - 1, bytes(BLOCK))
        rc, summary, stderr = verify(guest, damaged, "--acked", acked_log)
        assert rc == 1 and not summary["ok"], summary
        assert {"block": lost_seq - 1, "want": lost_seq} in [
            {key: entry[key] for key in ("block", "want")} for entry in summary["missing"]], summary
        assert f"block {lost_seq - 1}:" in stderr


def test_resume_after_a_crash_extends_the_stream(guest, crashed, workdir):
    image = os.path.join(workdir, "resumed.img")
    shutil.copyfile(crashed[0], image)
    rc, before, _ = verify(guest, image)
    with Guest(guest, image, f"gg.run=seqwrite gg.resume=1 gg.count={before['last'] + 50}") as vm:
        log = vm.wait_exit()
    assert f"SEQIO START run=4242 blocks=4096 from={before['last'] + 1}" in log
    acked_log = image + ".acked"
    with open(acked_log, "w") as f:
        f.write(crashed[2] + log)  # one console across both boots, as a host would keep it
    rc, summary, stderr = verify(guest, image, "--acked", acked_log)
    assert rc == 0 and summary["last"] == before["last"] + 50, (summary, stderr)
    assert summary["acked"] >= 50 and summary["verified"] == summary["last"]
    assert summary["max_gap_ms"] < 2000  # the reboot between the two runs is no gap


def test_wrap_around_and_a_misplaced_block(guest, workdir):
    blocks, count = 64, 200
    image = new_image(workdir, "small.img", blocks)
    with Guest(guest, image, f"gg.run=seqwrite gg.count={count} gg.rate=0") as vm:
        log = vm.wait_exit()
    assert "GG EXIT rc=0" in log and f"SEQIO DONE last={count}" in log
    acked_log = image + ".acked"
    with open(acked_log, "w") as f:
        f.write(log)
    rc, summary, stderr = verify(guest, image, "--acked", acked_log)
    assert rc == 0, (summary, stderr)
    assert (summary["last"], summary["acked"], summary["verified"], summary["unwritten"]) == (count, count, blocks, 0)
    # Block 10 holds seq 139 (= 11 + 2 * 64); seq 138's intact record put there is out of order.
    write_block(image, 10, read_block(image, 9))
    rc, summary, stderr = verify(guest, image, "--acked", acked_log)
    assert rc == 1 and summary["stale"] == [{"block": 10, "want": 139, "found": 138}], summary
    assert "block 10:" in stderr


def test_fio_reports_json(guest, workdir):
    job = "[randwrite]\nrw=randwrite\nbs=4k\nsize=8m\ndirect=1\nioengine=psync\n"
    image = new_image(workdir, "fio.img", 4096)
    with Guest(guest, image, "gg.run=fio gg.fio=" + base64.b64encode(job.encode()).decode()) as vm:
        log = vm.wait_exit(timeout=120)
    match = re.search(r"^GG FIO BEGIN\n(.*?)^GG FIO END rc=(\d+)$", log, re.S | re.M)
    assert match, log[-3000:]
    report = json.loads(match.group(1))
    assert match.group(2) == "0"
    write = report["jobs"][0]["write"]
    assert write["iops"] > 0 and write["io_bytes"] == 8 << 20


def test_guest_verifies_its_disk(guest, crashed, workdir):
    image = os.path.join(workdir, "reverify.img")
    shutil.copyfile(crashed[0], image)
    with Guest(guest, image, "gg.run=seqverify gg.runid=4242") as vm:
        log = vm.wait_exit()
    summary = json.loads(re.search(r"^GG VERIFY (\{.*\})$", log, re.M).group(1))
    assert summary["ok"] and summary["run"] == 4242 and summary["verified"] >= 100, summary
    assert "GG EXIT rc=0" in log
