"""What the integration tests and the fault suite share: running the real
provider scripts against the private GlusterFS, and checking data."""

import contextlib
import hashlib
import mmap
import os
import random
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROVIDER = os.path.join(ROOT, "providers", "gluster")
HARNESS = os.path.join(ROOT, "tests", "harness", "local_gluster.py")
STATE = os.environ.get("GLUSTER_TEST_DIR", "/tmp/ganeti-gluster-test")
CONFIG = os.path.join(STATE, "gluster.env")
MOUNT_BASE = os.path.join(STATE, "mnt")
MIB = 1 << 20


def harness(*args):
    return subprocess.run(["/usr/bin/python3", HARNESS, *args], check=True,
                          capture_output=True, text=True, timeout=300)


def run(action, env=None, args=(), cwd=None, check=None, timeout=300, config=CONFIG):
    """Runs one provider script; check=True/False asserts success/failure."""
    environment = {"PATH": "/usr/bin:/bin", "GLUSTER_CONFIG": config}
    environment.update(env or {})
    result = subprocess.run([os.path.join(PROVIDER, action), *args], env=environment,
                            cwd=cwd or PROVIDER, capture_output=True, text=True, timeout=timeout)
    if check is True:
        assert result.returncode == 0, f"{action} failed: {result.stderr}"
    elif check is False:
        assert result.returncode != 0, f"{action} unexpectedly succeeded: {result.stdout}"
        assert_one_line_error(result)
    return result


def assert_one_line_error(result):
    assert result.stdout == "", f"stdout must be empty on failure: {result.stdout!r}"
    assert "Traceback" not in result.stderr
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("gluster ") and ": error: " in last, result.stderr


def image_path(name, volume="gv0", directory="ganeti", mount_base=MOUNT_BASE):
    return os.path.join(mount_base, volume, directory, name)


def sha256_of(path, length):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        remaining = length
        while remaining:
            chunk = handle.read(min(remaining, 4 * MIB))
            assert chunk, f"{path} is shorter than {length} bytes"
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def write_random(device, length, seed):
    """Writes `length` pseudo-random bytes at offset 0 with O_DIRECT; returns their hash."""
    data = random.Random(seed).randbytes(length)
    fd = os.open(device, os.O_WRONLY | os.O_DIRECT)
    try:
        buffer = mmap.mmap(-1, length)  # page-aligned, as O_DIRECT needs
        buffer.write(data)
        assert os.write(fd, buffer) == length
        os.fsync(fd)
    finally:
        os.close(fd)
    return hashlib.sha256(data).hexdigest()


def loop_devices_of(path):
    out = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines()
            if line.split()[1:] and line.split(None, 1)[1].strip() == path]


def fuse_client_pid(mount_point):
    """The pid of the glusterfs client process serving mount_point, or None."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"glusterfs") and mount_point.encode() in argv:
                return int(entry)
    return None


@contextlib.contextmanager
def held_open(path):
    """A process (sleep) holding `path` open for the with-block, as a running VM holds its disk."""
    with open(path, "rb") as handle:
        holder = subprocess.Popen(["sleep", "600"], stdin=handle)
    try:
        yield holder
    finally:
        holder.kill()
        holder.wait()
