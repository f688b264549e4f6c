"""Security properties: no shell, fixed PATH, private files and directories."""

import ast
import os
import re
import stat
import subprocess
import sys
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from support import CONFIG, MOUNT_BASE, PROVIDER, ROOT, harness, image_path, run  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "lib"))
SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # what a spawned tool must see, whatever the caller had
SOURCES = [os.path.join(directory, f) for directory, _, files in os.walk(os.path.join(ROOT, "lib", "ganeti_gluster"))
           for f in files if f.endswith(".py")]
SOURCES.append(os.path.join(ROOT, "providers", "gluster", "gluster-provider"))
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("os", "execl"), ("os", "execlp"),
               ("os", "spawnl"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}
# What runs another program; only runner.py may (a fork without an exec, such
# as fuse_worker's, runs this package's own code: what any of the provider's
# processes runs is checked by strace below).
SPAWNS = {("os", "posix_spawn"), ("os", "posix_spawnp"), ("os", "execv"),
          ("os", "execve"), ("os", "execvp"), ("os", "execvpe")}


def _calls(path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: os.path.relpath(path, ROOT))
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
                    f"{path}:{call.lineno}: programs are started in runner.py only"


def _hostile_path(directory, marker, tools):
    """A PATH whose first directory has fakes of these tools, which would
    leave `marker` behind if they ever ran."""
    for tool in tools:
        fake = directory / tool
        fake.write_text(f"#!/bin/sh\necho \"$0\" >> {marker}\nexit 1\n")
        fake.chmod(0o755)
    return f"{directory}:/usr/sbin:/usr/bin:/sbin:/bin"


def test_a_tool_the_runner_starts_sees_only_the_fixed_path(tmp_path, monkeypatch):
    # What the spawned tool really gets: `env` prints its whole environment.
    from ganeti_gluster.runner import Runner
    marker = tmp_path / "hijacked"
    monkeypatch.setenv("PATH", _hostile_path(tmp_path, marker, ("env", "printf")))
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    monkeypatch.setenv("HOSTILE_VARIABLE", "1")
    result = Runner().run(["env"], timeout=10)
    assert sorted(result.stdout.splitlines()) == ["LC_ALL=C", f"PATH={SAFE_PATH}"]
    assert not marker.exists(), marker.read_text()


def test_the_runner_passes_arguments_as_they_are_without_a_shell(tmp_path, monkeypatch):
    from ganeti_gluster.runner import Runner
    marker = tmp_path / "hijacked"
    monkeypatch.setenv("PATH", _hostile_path(tmp_path, marker, ("env", "printf", "touch", "sh")))
    words = ["a b", f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", "*", "'\""]
    result = Runner().run(["printf", "%s\\n", *words], timeout=10)
    assert result.stdout.splitlines() == words
    assert not marker.exists()


def _execs(trace):
    """{pid: (program, environment)} of each process's first execve in an
    `strace -f -v` output, and {pid: parent pid}."""
    execs, parents = {}, {}
    for line in trace.splitlines():
        pid, _, call = line.partition(" ")
        call = call.strip()
        found = re.match(r'execve\("([^"]*)", \[.*\], \[([^\]]*)\]', call)
        if found and pid not in execs:
            execs[pid] = (found.group(1), re.findall(r'"((?:[^"\\]|\\.)*)"', found.group(2)))
        spawned = re.search(r"(?:clone3?|vfork|fork)(?:\(| resumed>).*\) += (\d+)$", call)
        if spawned:
            parents[spawned.group(1)] = pid
    return execs, parents


def _traced(trace, argv, env, timeout=120):
    """Runs argv under `strace -f` into the file `trace`; its exit code.
    strace would wait for every process it follows, the glusterfs client
    daemon too: it is stopped (and lets go of them) once argv has exited."""
    tracer = subprocess.Popen(["strace", "-f", "-q", "-I", "1", "-v", "-s", "4096", "-e",
                               "trace=execve,clone,clone3,vfork,fork", "-o", str(trace), *argv],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            done = tracer.poll() is not None
            text = trace.read_text() if trace.exists() else ""
            first = text.split(" ", 1)[0]
            ended = first and re.search(rf"^{first} +\+\+\+ exited with (\d+) \+\+\+$", text, re.M)
            if ended:
                return int(ended.group(1))
            if done:
                raise AssertionError(f"strace ended ({tracer.returncode}) before {argv[0]} did")
            time.sleep(0.1)
        raise AssertionError(f"{argv[0]} did not end within {timeout} s under strace")
    finally:
        tracer.terminate()
        tracer.wait(10)


def test_every_tool_a_script_starts_sees_only_the_fixed_path(tmp_path):
    """A provider script started with a hostile PATH (and whatever else its
    caller had): each program it starts, itself or from a process it forked,
    comes from the fixed PATH and gets exactly PATH and LC_ALL, seen at the
    execve by strace."""
    marker = tmp_path / "hijacked"
    tools = ("mount", "glusterfs", "mount.glusterfs", "losetup", "umount", "stat", "env", "python3")
    fakes = tmp_path / "bin"
    fakes.mkdir()
    hostile = {"PATH": _hostile_path(fakes, marker, tools), "LD_LIBRARY_PATH": str(fakes),
               "HOSTILE_VARIABLE": "1"}
    name = f"sec-{uuid.uuid4().hex[:8]}.ext.disk0"
    # A mount base of this test's own, so that what else is mounted does not
    # matter: the detach unmounts the volume there (GLUSTER_UNMOUNT_DELAY=0),
    # and the attach must mount it again.
    own = {"VOL_NAME": name, "GLUSTER_MOUNT_BASE": str(tmp_path / "mnt")}
    trace = tmp_path / "trace"
    try:
        run("create", {**own, "VOL_SIZE": "8"}, check=True)
        run("detach", own, check=True)
        code = _traced(trace, [os.path.join(PROVIDER, "attach")], {"GLUSTER_CONFIG": CONFIG, **own, **hostile})
        assert code == 0, trace.read_text()[-2000:]
    finally:
        run("detach", own)
        run("remove", own)
    execs, parents = _execs(trace.read_text())
    script = next(iter(execs))  # strace's child: the attach script itself

    def starter(pid):
        """The program that started pid: its nearest ancestor that ran one
        (past forks that did not, such as a FUSE worker of the script's)."""
        pid = parents.get(pid)
        while pid is not None and pid not in execs:
            pid = parents.get(pid)
        return pid

    started = {pid: execs[pid] for pid in execs if starter(pid) == script}
    programs = sorted(os.path.basename(program) for program, _ in started.values())
    # it mounted the volume, then bound a loop device
    assert "losetup" in programs and {"glusterfs", "mount"} & set(programs), programs
    for program, environment in started.values():
        assert os.path.dirname(program) in SAFE_PATH.split(":"), program
        assert sorted(environment) == ["LC_ALL=C", f"PATH={SAFE_PATH}"], (program, environment)
    assert not marker.exists(), marker.read_text()


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
