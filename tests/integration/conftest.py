"""Integration tests: the real executables against the private GlusterFS.

The GlusterFS comes from tests/harness/local_gluster.py (make gluster-up, or
tests/run-all); if it is not running, this session starts it and stops it
at the end. Scripts run with a clean environment, as Ganeti's noded would
give them (plus whatever the test adds).
"""

import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from support import (CONFIG, MIB, MOUNT_BASE, PROVIDER, ROOT, assert_one_line_error,  # noqa: E402,F401
                     harness, image_path, loop_devices_of, run, sha256_of, write_random)


@pytest.fixture(scope="session", autouse=True)
def gluster():
    started = not os.path.exists(CONFIG)
    harness("up")
    yield
    if started:
        harness("down")


class DiskTracker:
    """Names disks for one test and removes them afterwards, whatever happened."""

    def __init__(self):
        self.made = []

    def name(self, suffix=".ext.disk0", **extra_env):
        """A fresh VOL_NAME, cleaned up (with these EXTP_* etc.) after the test."""
        name = f"it-{uuid.uuid4().hex[:12]}{suffix}"
        self.track(VOL_NAME=name, **extra_env)
        return name

    def track(self, **env):
        self.made.append(env)

    def cleanup(self):
        for env in reversed(self.made):
            run("detach", env)
            run("remove", env)


@pytest.fixture
def disks():
    tracker = DiskTracker()
    yield tracker
    tracker.cleanup()
