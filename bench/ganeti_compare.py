"""Side by side on a real Ganeti 3.0 cluster (the e2e harness): Ganeti's
built-in `gluster` disk template against `-t ext` with this provider, both on
a single-brick GlusterFS volume of the same node, same size, same commands.

A third column is the floor of the ext template itself: `-t ext` with a
provider whose scripts do nothing (shell scripts; attach names one
pre-made loop device). What that costs over the built-in template is
Ganeti's own price for running a provider: no ExtStorage provider can be
faster. A second phase measures the provider with GLUSTER_KEEP_MOUNTED=yes.

Each run adds, starts, grows, stops and removes one instance per template,
the templates taking turns so that drift on the machine hits all alike.
"""

import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "e2e"))
import cluster  # noqa: E402

NULL_PROVIDER = "/srv/ganeti/extstorage/nullbench"
NULL_BACKING = os.path.join(cluster.STATE, "nullbench.img")
TEMPLATES = {
    "builtin": {"name": "inst1.example.com", "template": "gluster", "disk": "0:size=1G"},
    "ext": {"name": "inst2.example.com", "template": "ext", "disk": "0:size=1G,provider=gluster"},
    "ext_null": {"name": "inst3.example.com", "template": "ext", "disk": "0:size=1G,provider=nullbench"},
}
COMMANDS = ("add", "start", "grow-disk", "stop", "remove")
OPCODES = {"add": "INSTANCE_CREATE", "start": "INSTANCE_STARTUP", "grow-disk": "INSTANCE_GROW_DISK",
           "stop": "INSTANCE_SHUTDOWN", "remove": "INSTANCE_REMOVE"}


def _argv(command, template):
    name = TEMPLATES[template]["name"]
    if command == "add":
        return ["gnt-instance", "add", "-t", TEMPLATES[template]["template"],
                "--disk", TEMPLATES[template]["disk"], "-o", "e2e-dummy", "--no-install",
                "--no-ip-check", "--no-name-check", "--no-start", "-n", cluster.NODE,
                "-B", "memory=128", name]
    return {"start": ["gnt-instance", "startup", name],
            "grow-disk": ["gnt-instance", "grow-disk", name, "0", "1G"],
            "stop": ["gnt-instance", "shutdown", "--timeout=0", name],
            "remove": ["gnt-instance", "remove", "-f", name]}[command]


def _install_null_provider():
    """The do-nothing provider; returns its loop device."""
    with open(NULL_BACKING, "wb") as handle:
        handle.truncate(4 << 30)  # more than any size the runs grow to
    device = subprocess.run(["losetup", "--find", "--show", NULL_BACKING], check=True,
                            capture_output=True, text=True).stdout.strip()
    os.makedirs(NULL_PROVIDER)
    for action in ("create", "attach", "detach", "remove", "grow", "setinfo", "verify", "open",
                   "close", "snapshot"):
        with open(os.path.join(NULL_PROVIDER, action), "w") as handle:
            handle.write(f"#!/bin/sh\necho {device}\n" if action == "attach" else "#!/bin/sh\n")
        os.chmod(os.path.join(NULL_PROVIDER, action), 0o755)
    open(os.path.join(NULL_PROVIDER, "parameters.list"), "w").close()
    return device


def _remove_null_provider(device):
    shutil.rmtree(NULL_PROVIDER, ignore_errors=True)
    if device:
        subprocess.run(["losetup", "--detach", device], check=False)


def _timed(argv):
    """(seconds, provider calls, seconds spent inside them) of one command;
    the provider's own call log says how long each call ran."""
    mark = os.path.getsize(cluster.CALL_LOG) if os.path.exists(cluster.CALL_LOG) else 0
    started = time.perf_counter()
    cluster.inside(*argv)
    seconds = time.perf_counter() - started
    calls = []
    if os.path.exists(cluster.CALL_LOG):
        with open(cluster.CALL_LOG) as handle:
            handle.seek(mark)
            calls = [float(line.split(" in ", 1)[1].split(" ms", 1)[0]) / 1000
                     for line in handle if " in " in line]
    return seconds, len(calls), sum(calls)


def _jobs():
    """[(id, summary, seconds the job ran)] of every job, by Ganeti's own
    timestamps: the job's processing time, without the client's start-up and
    without the delay with which the client notices the end (it varied from
    50 to 120 ms between runs of one command)."""
    listing = cluster.inside("gnt-job", "list", "--no-headers", "--separator=|",
                             "-o", "id,summary,start_ts,end_ts").stdout
    jobs = []
    for line in listing.splitlines():
        job_id, summary, start, end = line.split("|")
        if start.startswith("[") and end.startswith("["):
            (start_s, start_us), (end_s, end_us) = (map(int, v.strip("[]").split(",")) for v in (start, end))
            jobs.append((int(job_id), summary, (end_s - start_s) + (end_us - start_us) / 1e6))
    return jobs


def _run_times(templates, after_job):
    """{template: {command: [seconds the job ran]}} of the jobs after `after_job`."""
    times = {template: {command: [] for command in COMMANDS} for template in templates}
    for job_id, summary, seconds in _jobs():
        for template in templates:
            for command in COMMANDS:
                if job_id > after_job and summary == f"{OPCODES[command]}({TEMPLATES[template]['name']})":
                    times[template][command].append(seconds)
    return times


def _last_job():
    return max((job_id for job_id, _, _ in _jobs()), default=0)


def _rounds(templates, runs):
    """{template: {command: [seconds]}} and, for "ext", {command: [(calls,
    seconds inside)]}, from `runs` rounds in which the templates take turns."""
    seconds = {template: {command: [] for command in COMMANDS} for template in templates}
    calls = {command: [] for command in COMMANDS}
    for round_number in range(runs):
        order = templates[round_number % len(templates):] + templates[:round_number % len(templates)]
        for command in COMMANDS:
            for template in order:
                took, count, inside = _timed(_argv(command, template))
                seconds[template][command].append(took)
                if template == "ext":
                    calls[command].append((count, inside))
    return seconds, calls


def compare(runs):
    """{command: {builtin_s, ext_s, ext_null_s, ratio, null_ratio, provider_calls,
    in_provider_s, keep_mounted_ratio}}. A second phase runs the provider with
    GLUSTER_KEEP_MOUNTED=yes (a node setting, so not interleaved with the
    default) against the built-in template again."""
    print("bench: bringing up the Ganeti cluster for the built-in template comparison",
          file=sys.stderr, flush=True)
    device = None
    try:
        cluster.up(builtin_gluster=True)
        device = _install_null_provider()
        first = _last_job()
        seconds, calls = _rounds(["builtin", "ext", "ext_null"], runs)
        run_times = _run_times(["builtin", "ext", "ext_null"], first)
        with open(cluster.PROVIDER_CONFIG, "a") as handle:
            handle.write("GLUSTER_KEEP_MOUNTED=yes\n")
        kept, _ = _rounds(["builtin", "ext"], runs)
    finally:
        _remove_null_provider(device)
        cluster.down()
    results = {}
    for command in COMMANDS:
        builtin, ext, null = (statistics.median(seconds[t][command]) for t in ("builtin", "ext", "ext_null"))
        job_builtin, job_ext, job_null = (statistics.median(run_times[t][command])
                                          for t in ("builtin", "ext", "ext_null"))
        provider_calls = statistics.median(count for count, _ in calls[command])
        results[command] = {"builtin_s": builtin, "ext_s": ext, "ext_null_s": null,
                            "ratio": ext / builtin, "null_ratio": null / builtin,
                            "job_builtin_s": job_builtin, "job_ext_s": job_ext, "job_null_s": job_null,
                            "job_ratio": job_ext / job_builtin, "job_null_ratio": job_null / job_builtin,
                            "provider_calls": provider_calls,
                            # what one call costs Ganeti's job beyond a call of /bin/sh
                            "cost_per_call_s": (job_ext - job_null) / max(provider_calls, 1),
                            "in_provider_s": statistics.median(s for _, s in calls[command]),
                            "keep_mounted_ratio": (statistics.median(kept["ext"][command])
                                                   / statistics.median(kept["builtin"][command]))}
    return results


if __name__ == "__main__":
    for command, figures in compare(int(sys.argv[1]) if len(sys.argv) > 1 else 3).items():
        print(f"{command:10s} built-in {figures['builtin_s']:.2f} s  ext {figures['ext_s']:.2f} s "
              f"({figures['ratio']:.2f}x)  do-nothing ext {figures['ext_null_s']:.2f} s "
              f"({figures['null_ratio']:.2f}x)  jobs ran {figures['job_ratio']:.2f}x "
              f"(do-nothing {figures['job_null_ratio']:.2f}x)  {figures['provider_calls']:g} provider calls, "
              f"{figures['in_provider_s'] * 1000:.0f} ms inside them; keep_mounted "
              f"{figures['keep_mounted_ratio']:.2f}x")
