"""What every part of make e2e shares: a Ganeti command run as a Step that
shows the provider calls it caused, checks on what it left, and the one
list of failures the run ends with."""

import os
import shlex
import time

import cluster

failures = []
skipped = []


class Step:
    """One Ganeti command: run it, show the provider calls, then check."""

    def __init__(self, *command, fails=False, answer_yes=False):
        """fails: the command is expected to fail; its output is kept in
        self.output for the checks, and succeeding is a failure.
        answer_yes: the command asks on its terminal (Ganeti asks there even
        with -f); it gets one, and "y" to every question."""
        self.command = command
        call_log = cluster.host(cluster.CALL_LOG)
        mark = os.path.getsize(call_log) if os.path.exists(call_log) else 0
        mark2 = os.path.getsize(cluster.CALL_LOG2) if os.path.exists(cluster.CALL_LOG2) else 0
        print(f"\n$ {' '.join(command)}{'   (answering y on a terminal)' if answer_yes else ''}", flush=True)
        if answer_yes:
            command = ("sh", "-c", f"yes | script -qec {shlex.quote(shlex.join(command))} /dev/null")
        result = cluster.inside(*command, check=False)
        self.output = result.stdout + result.stderr
        if answer_yes:  # the terminal echoes every "y" it was given
            self.output = "\n".join(line for line in self.output.splitlines() if line.strip() != "y")
        if fails:
            if result.returncode == 0:
                failures.append(f"{' '.join(command)} succeeded, expected to fail")
            else:
                lines = self.output.strip().splitlines()
                reason = next((line for line in reversed(lines) if "rror" in line or "ailure" in line),
                              lines[-1] if lines else f"exit {result.returncode}, no output")
                print("    (failed, as expected): " + reason[-400:])
        elif result.returncode != 0:
            print(result.stdout[-2000:] + result.stderr[-2000:])
            failures.append(f"{' '.join(command)} failed")
            raise RuntimeError(f"{' '.join(command)} exited {result.returncode}")
        lines = []
        for log, start in ((call_log, mark), (cluster.CALL_LOG2, mark2)):
            if os.path.exists(log):
                with open(log) as handle:
                    handle.seek(start)
                    lines += handle.read().splitlines()
        lines.sort()  # by time stamp, then node
        self.calls = [line.split(" ", 4)[3] for line in lines]
        self.calls_by_node = [(line.split(" ")[1], line.split(" ")[3]) for line in lines]
        if True:
            for line in lines:
                fields = line.split(" ")
                name = next((f[9:] for f in fields if f.startswith("VOL_NAME=")), "")
                extra = " ".join(f for f in fields if f.startswith(("VOL_NEW_SIZE", "VOL_OPEN_EXCLUSIVE",
                                                                    "VOL_METADATA", "VOL_SNAPSHOT_NAME",
                                                                    "EXTP_POOL", "EXTP_PREALLOCATION")))
                outcome = line.split(" -> ", 1)[1] if " -> " in line else ""
                print(f"    provider@{fields[1].split('.')[0]}: {fields[3]:<8} {name[:8]}..{name[-10:]} "
                      f"{extra} -> {outcome[:60]}")

    def check(self, description, condition):
        check(" ".join(self.command), description, condition)
        return self


def check(context, description, condition):
    print(f"    check: {description}: {'ok' if condition else 'FAILED'}", flush=True)
    if not condition:
        failures.append(f"after {context}: {description}")
    return condition


def wait_for(condition, seconds=60):
    """Whether condition() holds within `seconds`, asked every half second."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True
