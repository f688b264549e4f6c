"""GLUSTER_UNMOUNT_DELAY: a volume nothing uses is unmounted that many seconds
after the last script let go of it, by a process that outlives the script.

The harness's configuration sets the delay to 0 for the other tests; these set
it per call. The waiting process is found as the holder of the volume's timer
lock, and killed by PID if a test leaves it waiting.
"""

import os
import signal
import threading
import time

import pytest

from conftest import MOUNT_BASE, image_path, run

TIMER = os.path.join(MOUNT_BASE, ".locks", "volume-gv0.unmount")
MOUNT_POINT = os.path.join(MOUNT_BASE, "gv0")


def delayed(name, seconds):
    return {"VOL_NAME": name, "GLUSTER_UNMOUNT_DELAY": str(seconds)}


def waiters():
    """PIDs of the processes holding the timer file open: the waiting ones."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == TIMER for fd in fds):
                pids.append(int(pid))
        except OSError:
            continue
    return pids


def mount_id():
    """The kernel's ID of the volume's mount, new for every mount; None if absent."""
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            if fields[4] == MOUNT_POINT:
                return fields[0]
    return None


def wait_until(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def no_waiter_left():
    yield
    for pid in waiters():
        os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not waiters(), 10)


def test_ganeti_remove_sequence_mounts_once_and_unmounts_after_the_delay(disks, no_waiter_left):
    name = disks.name()
    run("create", {**delayed(name, 2), "VOL_SIZE": "8"}, check=True)
    run("detach", delayed(name, 0), check=True)  # create leaves the volume mounted
    assert mount_id() is None
    run("attach", delayed(name, 2), check=True)
    mounted = mount_id()
    run("detach", delayed(name, 2), check=True)
    assert mount_id() == mounted and len(waiters()) == 1
    run("remove", delayed(name, 2), check=True)
    assert mount_id() == mounted, "remove mounted the volume again"
    assert not os.path.exists(image_path(name))
    assert wait_until(lambda: mount_id() is None, 15), "the volume stayed mounted"
    assert wait_until(lambda: not waiters(), 5)


def test_each_release_restarts_the_wait_of_the_one_waiting_process(disks, no_waiter_left):
    first, second = disks.name(), disks.name()
    for name in (first, second):
        run("create", {**delayed(name, 3), "VOL_SIZE": "8"}, check=True)
    run("attach", delayed(first, 3), check=True)
    run("detach", delayed(first, 3), check=True)
    [waiting] = waiters()
    time.sleep(2)
    run("attach", delayed(second, 3), check=True)
    run("detach", delayed(second, 3), check=True)
    released = time.monotonic()
    assert waiters() == [waiting], "a second process waits"
    time.sleep(max(0.0, released + 2 - time.monotonic()))
    assert mount_id() is not None, "unmounted before 3 s had passed since the last release"
    assert wait_until(lambda: mount_id() is None, 15)
    assert wait_until(lambda: not waiters(), 5)


def test_a_volume_in_use_when_the_delay_ends_stays_mounted(disks, no_waiter_left):
    idle, busy = disks.name(), disks.name()
    for name in (idle, busy):
        run("create", {**delayed(name, 1), "VOL_SIZE": "8"}, check=True)
        run("attach", delayed(name, 1), check=True)
    run("detach", delayed(idle, 1), check=True)
    assert wait_until(lambda: not waiters(), 10)
    assert mount_id() is not None and os.path.exists(image_path(busy))
    run("detach", delayed(busy, 0), check=True)
    assert mount_id() is None


def test_the_waiting_process_lets_the_caller_go(disks, no_waiter_left):
    # Ganeti reads a script's output to its end: had the waiting process kept
    # stdout or stderr, detach would only return after the 60 s delay.
    name = disks.name()
    run("create", {**delayed(name, 60), "VOL_SIZE": "8"}, check=True)
    run("attach", delayed(name, 60), check=True)
    result = run("detach", delayed(name, 60), check=True, timeout=20)
    assert result.stdout == "" and result.stderr == ""
    [waiting] = waiters()
    with open(f"/proc/{waiting}/stat") as handle:
        session = int(handle.read().rsplit(")", 1)[1].split()[3])
    assert session == waiting, "the waiting process did not leave the caller's session"
    targets = {int(fd): os.readlink(f"/proc/{waiting}/fd/{fd}") for fd in os.listdir(f"/proc/{waiting}/fd")}
    assert {targets.pop(fd) for fd in (0, 1, 2)} == {os.devnull}
    assert list(targets.values()) == [TIMER], "the waiting process kept other descriptors"


def test_parallel_attaches_and_detaches_leave_one_waiter_then_nothing(disks, no_waiter_left):
    names = [disks.name() for _ in range(6)]
    for name in names:
        run("create", {**delayed(name, 1), "VOL_SIZE": "8"}, check=True)
    failures = []

    def cycle(name):
        for _ in range(8):
            for action in ("attach", "detach"):
                result = run(action, delayed(name, 1))
                if result.returncode:
                    failures.append(f"{action}: {result.stderr}")

    threads = [threading.Thread(target=cycle, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(waiters()) <= 1
    assert wait_until(lambda: mount_id() is None, 20), "the volume stayed mounted"
    assert wait_until(lambda: not waiters(), 5)
