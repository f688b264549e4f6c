"""Security properties: no shell, fixed PATH, private files and directories."""

import ast
import os
import stat
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from support import CONFIG, MOUNT_BASE, ROOT, harness, image_path, run  # noqa: E402

SOURCES = [os.path.join(ROOT, "lib", "ganeti_gluster", f)
           for f in os.listdir(os.path.join(ROOT, "lib", "ganeti_gluster")) if f.endswith(".py")]
SOURCES.append(os.path.join(ROOT, "providers", "gluster", "gluster-provider"))
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("os", "execl"), ("os", "execlp"),
               ("os", "spawnl"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}
SPAWNS = {("os", "posix_spawn"), ("os", "posix_spawnp"), ("os", "fork"), ("os", "execv"),
          ("os", "execve"), ("os", "execvp"), ("os", "execvpe")}


def _calls(path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


@pytest.mark.parametrize("path", SOURCES, ids=os.path.basename)
def test_no_shell_in_any_command_path(path):
    for call in _calls(path):
        for keyword in call.keywords:
            assert not (keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant)
                                                        and keyword.value.value is False)), \
                f"{path}:{call.lineno} passes shell="
        function = call.func
        if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name):
            assert (function.value.id, function.attr) not in SHELL_CALLS, \
                f"{path}:{call.lineno} calls {function.value.id}.{function.attr}"
            if function.value.id == "subprocess" or (function.value.id, function.attr) in SPAWNS:
                assert os.path.basename(path) == "runner.py", \
                    f"{path}:{call.lineno}: processes are started in runner.py only"


def test_the_runner_passes_argument_lists_and_a_fixed_path():
    from ast import unparse
    source = open(os.path.join(ROOT, "lib", "ganeti_gluster", "runner.py")).read()
    assert 'SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"' in source
    assert 'TOOL_ENV = {"PATH": SAFE_PATH, "LC_ALL": "C"}' in source
    calls = list(_calls(os.path.join(ROOT, "lib", "ganeti_gluster", "runner.py")))
    spawns = [c for c in calls if unparse(c.func) == "os.posix_spawn"]
    # the program found on SAFE_PATH, the argument list as given, the fixed environment
    assert spawns and all([unparse(a) for a in c.args] == ["program", "args", "TOOL_ENV"] for c in spawns)
    assert not [c for c in calls if unparse(c.func).startswith("subprocess.")]


@pytest.fixture(scope="module", autouse=True)
def gluster():
    harness("up")


def test_path_from_the_caller_is_not_used(tmp_path):
    marker = tmp_path / "hijacked"
    for tool in ("mount", "glusterfs", "stat", "losetup", "umount", "gluster", "python3"):
        fake = tmp_path / tool
        fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
        fake.chmod(0o755)
    name = f"sec-{uuid.uuid4().hex[:8]}.ext.disk0"
    try:
        run("create", {"VOL_NAME": name, "VOL_SIZE": "8", "PATH": str(tmp_path)}, check=True)
        run("attach", {"VOL_NAME": name, "PATH": str(tmp_path)}, check=True)
        run("detach", {"VOL_NAME": name, "PATH": str(tmp_path)}, check=True)
    finally:
        run("detach", {"VOL_NAME": name})
        run("remove", {"VOL_NAME": name})
    assert not marker.exists()


def test_images_are_0600_and_the_mount_base_0700():
    name = f"sec-{uuid.uuid4().hex[:8]}.ext.disk0"
    try:
        run("create", {"VOL_NAME": name, "VOL_SIZE": "8"}, check=True)
        run("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": name + ".snap"}, check=True)
        assert stat.S_IMODE(os.stat(image_path(name)).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(image_path(name + ".snap")).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(MOUNT_BASE).st_mode) == 0o700
    finally:
        for disk in (name + ".snap", name):
            run("remove", {"VOL_NAME": disk})


@pytest.mark.parametrize("mode,owner", [(0o620, 0), (0o602, 0), (0o600, 65534)])
def test_a_config_file_others_can_write_is_refused(tmp_path, mode, owner):
    config = tmp_path / "gluster.env"
    config.write_text(open(CONFIG).read())
    config.chmod(mode)
    os.chown(config, owner, -1)
    result = run("attach", {"VOL_NAME": "x.ext.disk0", "GLUSTER_CONFIG": str(config)}, check=False)
    assert "owned by root" in result.stderr and result.returncode == 2
