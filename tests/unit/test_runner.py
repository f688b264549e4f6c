"""The command runner, with real commands: output, exit codes, the bound on
time, what a command inherits, and that it costs no `subprocess` import."""

import os
import signal
import subprocess
import sys
import time

import pytest

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lib")
sys.path.insert(0, LIB)

from ganeti_gluster.errors import ProviderError  # noqa: E402
from ganeti_gluster.runner import CommandFailed, Runner  # noqa: E402


def test_output_and_exit_code():
    result = Runner().run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_failure_names_the_last_stderr_line():
    with pytest.raises(CommandFailed) as caught:
        Runner().run(["sh", "-c", "echo first >&2; echo 'the reason' >&2; exit 1"], timeout=10)
    assert str(caught.value) == "sh failed: the reason"
    assert caught.value.returncode == 1


def test_death_by_signal_is_a_negative_exit_code():
    result = Runner().run(["sh", "-c", "kill -TERM $$"], timeout=10, check=False)
    assert result.returncode == -signal.SIGTERM


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "no-pidfd"])
def test_an_exit_after_the_output_ends_is_awaited(monkeypatch, pidfd):
    """The exit is awaited on a pidfd; kernels before 5.3 have none, and then
    waitpid is polled."""
    import errno

    def no_pidfd(pid):
        raise OSError(errno.ENOSYS, "Function not implemented")

    if not pidfd:
        monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    result = Runner().run(["sh", "-c", "exec >&- 2>&-; sleep 0.2; exit 4"], timeout=10, check=False)
    assert result.returncode == 4


def test_large_output_on_both_pipes_does_not_deadlock():
    result = Runner().run(["sh", "-c", "head -c 300000 /dev/zero; head -c 200000 /dev/zero >&2"],
                          timeout=10)
    assert (len(result.stdout), len(result.stderr)) == (300000, 200000)


def test_stdin_is_empty_and_environment_fixed():
    assert Runner().run(["cat"], timeout=10).stdout == ""
    lines = sorted(Runner().run(["env"], timeout=10).stdout.splitlines())
    assert lines == ["LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]


def test_missing_program():
    with pytest.raises(ProviderError, match="^no-such-tool-here is not installed$"):
        Runner().run(["no-such-tool-here"], timeout=10)


def test_a_command_past_its_time_is_killed(tmp_path):
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(ProviderError, match="^sh did not finish within 0.3 s$"):
        Runner().run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], timeout=0.3)
    assert time.monotonic() - started < 2
    pid = int(pidfile.read_text())
    assert not os.path.exists(f"/proc/{pid}"), "the timed-out command still runs (or is unreaped)"


def test_a_daemon_holding_the_pipe_is_bounded_too(tmp_path):
    """A command that leaves a child holding stdout ends at the deadline, as
    with subprocess; the glusterfs client does not do this, but a broken one
    must not hang a Ganeti job."""
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError, match="did not finish"):
            Runner().run(["sh", "-c", f"sleep 30 & echo $! > {pidfile}"], timeout=0.5)
        assert time.monotonic() - started < 2
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_inherited_descriptors_stay_with_us(tmp_path):
    fd = os.open(tmp_path / "held", os.O_WRONLY | os.O_CREAT)
    try:
        os.set_inheritable(fd, True)
        listed = Runner().run(["ls", "/proc/self/fd"], timeout=10).stdout.split()
    finally:
        os.close(fd)
    assert str(fd) not in listed
    assert {"0", "1", "2"} <= set(listed)


def test_no_subprocess_import():
    """The reason this runner exists: `import subprocess` cost 10 ms a call."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from ganeti_gluster import main, operations\n"
            "from ganeti_gluster.runner import Runner\n"
            "assert Runner().run(['true'], timeout=10).returncode == 0\n"
            "print(sorted(m for m in ('subprocess', 'locale', 're', 'threading') if m in sys.modules))"
            % LIB)
    done = subprocess.run(["/usr/bin/python3", "-IS", "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_a_detached_child_runs_on_after_the_script_without_its_pipes(tmp_path):
    """The script (run here with pipes, as Ganeti runs it) ends at once; its
    child writes, a second later, what it still has open and its session."""
    report, kept = tmp_path / "report", tmp_path / "kept"
    script = f"""
import os, sys, time
sys.path.insert(0, {LIB!r})
from ganeti_gluster.runner import run_detached
kept = os.open({str(kept)!r}, os.O_RDWR | os.O_CREAT)
other = os.open({str(kept)!r}, os.O_RDONLY)
os.set_inheritable(other, True)

def later():
    time.sleep(1)
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    with open({str(report)!r} + ".tmp", "w") as handle:
        handle.write(repr((fds, kept, os.getsid(0) == os.getpid())))
    os.rename({str(report)!r} + ".tmp", {str(report)!r})

print(run_detached(later, keep_fds=[kept]))
"""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, "True\n", "")
    assert not report.exists(), "the script waited for its child"
    deadline = started + 20
    while not report.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    fds, kept_fd, own_session = eval(report.read_text())
    # 0-2 (on /dev/null), the kept descriptor and the one listdir opened
    assert fds[:3] == [0, 1, 2] and kept_fd in fds and len(fds) == 5
    assert own_session
