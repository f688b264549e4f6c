"""The FUSE worker: touches run in another process, each within its bound."""

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
from ganeti_gluster import fuse_worker  # noqa: E402
from ganeti_gluster.errors import ProviderError, TransientError  # noqa: E402
from ganeti_gluster.fuse_worker import heartbeat, isolated  # noqa: E402


@isolated("sleeping on")
def sleep_on(path, seconds, beats):
    for _ in range(beats or 1):
        time.sleep(seconds)
        heartbeat()
    return os.getpid()


@isolated("looking at")
def look(path):
    return os.lstat(path)


@isolated("failing on")
def fail(path, kind):
    if kind == "transient":
        raise TransientError(f"{path} went away")
    return open(os.path.join(path, "missing")).read()


@isolated("dying on")
def die(path):
    os._exit(3)


@pytest.fixture
def bound():
    fuse_worker.configure(1.0)
    yield
    fuse_worker.configure(None)


def test_unconfigured_touches_run_in_this_process():
    assert sleep_on("/", 0, 0) == os.getpid()


def test_touches_run_in_one_worker_process(bound):
    first, second = sleep_on("/", 0, 0), sleep_on("/", 0, 0)
    assert first == second != os.getpid()


def test_results_and_errors_cross_intact(bound, tmp_path):
    info = look(str(tmp_path))
    assert info.st_ino == os.lstat(tmp_path).st_ino and info.st_blocks == os.lstat(tmp_path).st_blocks
    with pytest.raises(FileNotFoundError):
        fail(str(tmp_path), "oserror")
    with pytest.raises(TransientError, match="went away"):
        fail(str(tmp_path), "transient")


def test_a_touch_past_its_bound_fails_at_the_bound_and_a_new_worker_follows(bound):
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"sleeping on / did not finish within 1 s \(io_timeout\)"):
        sleep_on("/", 30, 0)
    assert time.monotonic() - started < 2
    assert sleep_on("/", 0, 0) != os.getpid()  # the stuck worker was left; another serves


def test_heartbeats_keep_long_work_alive(bound):
    assert sleep_on("/", 0.6, 3) != os.getpid()  # 1.8 s in all, a beat every 0.6 s


def test_a_worker_that_dies_is_reported_and_replaced(bound):
    with pytest.raises(ProviderError, match="dying on /x: the worker process that touches the mount ended"):
        die("/x")
    assert sleep_on("/", 0, 0) != os.getpid()


def test_a_full_preallocation_longer_than_the_bound_is_kept_alive_by_its_chunks(bound, tmp_path,
                                                                               monkeypatch):
    """Each chunk of a fill counts as progress: a 100 GiB full create must not look hung."""
    from ganeti_gluster import images

    write = os.pwrite

    def slow_write(fd, data, offset):
        time.sleep(0.1)
        return write(fd, data, offset)

    monkeypatch.setattr(images, "CHUNK", 1 << 20)
    monkeypatch.setattr(os, "pwrite", slow_write)  # in the worker, forked after this
    started = time.monotonic()
    images.create(str(tmp_path / "disk0"), 20 << 20, "full")  # 20 chunks: 2 s, twice the bound
    assert time.monotonic() - started > 1.5
    assert os.path.getsize(tmp_path / "disk0") == 20 << 20
