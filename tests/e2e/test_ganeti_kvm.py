"""ganeti_kvm: whether this node's Ganeti can start a KVM instance with an
access=userspace disk, asked of Ganeti's own FlattenDict (Debian 13's 3.1, in
the e2e's trixie root: tests/e2e/run runs this after building it; unpatched
and patched with docs/'s patch)."""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "lib"))

from ganeti_gluster import ganeti_kvm  # noqa: E402

GANETI31 = os.path.join(os.environ["E2E_TRIXIE_ROOT"], "usr/share/ganeti/3.1/ganeti/hypervisor/hv_kvm/kvm_utils.py")
PATCH = os.path.join(ROOT, "docs", "ganeti-3.1-kvm-gluster-userspace.patch")


def test_ganeti_31_is_found_out():
    problem = ganeti_kvm.userspace_problem(GANETI31)
    assert "cannot start a KVM instance with an access=userspace disk" in problem
    assert "[{'type': 'inet', 'host': 'h', 'port': '24007'}]" in problem


def test_patched_ganeti_31_is_fine(tmp_path):
    target = tmp_path / "lib" / "hypervisor" / "hv_kvm"
    target.mkdir(parents=True)
    shutil.copy(GANETI31, target / "kvm_utils.py")
    subprocess.run(["patch", "-p1", "--quiet", "-d", str(tmp_path), "-i", PATCH], check=True)
    assert ganeti_kvm.userspace_problem(str(target / "kvm_utils.py")) is None


def test_no_blockdev_flattening_is_fine(tmp_path):
    """Ganeti 3.0 (no FlattenDict: -drive file=gluster://...), no Ganeti, an unreadable one."""
    assert ganeti_kvm.userspace_problem(str(tmp_path / "missing.py")) is None
    other = tmp_path / "kvm_utils.py"
    other.write_text("def Other():\n  return 1\n")
    assert ganeti_kvm.userspace_problem(str(other)) is None
    other.write_text("def FlattenDict(:\n")
    assert ganeti_kvm.userspace_problem(str(other)) is None
