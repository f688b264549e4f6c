#!/usr/bin/python3
"""make faults: inject faults into the real private GlusterFS and check that
nothing is lost and no disk is stranded. Prints a table (scenario, what was
injected, outcome, time to outcome, data intact) and exits 1 if any row is
wrong.

The suite uses volumes of its own in the harness's glusterd (fv1: one brick,
strict-o-direct on; fr3: replica 3, group virt), its own mount base and its
own configuration, so killing their bricks touches no other test's disks.
Scenario 3 stops glusterd itself and starts it again.

  run_faults.py [SCENARIO ...]       default: all
  FAULTS_LOAD_SECONDS=120            how long the load scenario runs
"""

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from support import STATE, fuse_client_pid, harness, loop_devices_of, run  # noqa: E402

from writer import BLOCK, block  # noqa: E402

CONFIG = os.path.join(STATE, "faults.env")
MOUNT_BASE = os.path.join(STATE, "faults-mnt")
BRICKS = os.path.join(STATE, "bricks")
WRITER = os.path.join(HERE, "writer.py")
MOUNT_TIMEOUT = 20
LOAD_SECONDS = float(os.environ.get("FAULTS_LOAD_SECONDS", "120"))


class Wrong(Exception):
    """The scenario's outcome is not what must happen."""


# -- plumbing ------------------------------------------------------------------

def gluster(*args, check=True):
    result = subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(HERE), "harness",
                                                              "local_gluster.py"), "cli", *args],
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"gluster {' '.join(args)}: {result.stderr or result.stdout}")
    return result.stdout


def provider(action, env, check=None, **kwargs):
    return run(action, env, check=check, config=CONFIG, **kwargs)


def image(name, volume="fv1"):
    return os.path.join(MOUNT_BASE, volume, "ganeti", name)


def new_disk(size_mib, **env):
    name = f"fault-{uuid.uuid4().hex[:10]}.ext.disk0"
    provider("create", {"VOL_NAME": name, "VOL_SIZE": str(size_mib), **env}, check=True)
    return {"VOL_NAME": name, **env}


def attach(env):
    return provider("attach", env, check=True).stdout.split("\n")[0]


def discard(env):
    provider("detach", env)
    provider("remove", env)


def start_script(action, env):
    return subprocess.Popen([os.path.join(os.path.dirname(os.path.dirname(HERE)), "providers",
                                          "gluster", action)],
                            env={"PATH": "/usr/bin:/bin", "GLUSTER_CONFIG": CONFIG, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def brick_pids(volume):
    root = ElementTree.fromstring(gluster("volume", "status", volume, "--xml"))
    return [int(node.findtext("pid")) for node in root.iter("node")
            if node.findtext("path", "").startswith(BRICKS) and node.findtext("status") == "1"]


def restart_bricks(volume, count, killed):
    """Starts dead bricks again. glusterd notices a brick's death only after
    a moment and until then takes 'start force' as nothing to do: repeat it."""
    deadline = time.monotonic() + 60
    while len(set(brick_pids(volume)) - set(killed)) < count:
        if time.monotonic() > deadline:
            raise Wrong(f"the bricks of {volume} did not come back within 60 s")
        gluster("volume", "start", volume, "force")
        time.sleep(2)


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise Wrong(f"{what} did not happen within {timeout} s")


def verify_blocks(device, seed, indices):
    """Which of the given blocks do not read back as written (O_DIRECT reads)."""
    import mmap
    fd = os.open(device, os.O_RDONLY | os.O_DIRECT)
    buffer = mmap.mmap(-1, BLOCK)
    bad = []
    try:
        for index in indices:
            os.preadv(fd, [buffer], index * BLOCK)
            if buffer[:] != block(seed, index):
                bad.append(index)
    finally:
        os.close(fd)
    return bad


def heal_entries(volume):
    out = gluster("volume", "heal", volume, "info", check=False)
    return sum(int(line.split(":")[1]) for line in out.splitlines()
               if line.startswith("Number of entries:") and line.split(":")[1].strip().isdigit())


def setup():
    harness("up")
    volumes = gluster("volume", "list").split()
    if "fv1" not in volumes:
        gluster("volume", "create", "fv1", f"127.0.0.2:{BRICKS}/fv1", "force")
        gluster("volume", "set", "fv1", "performance.strict-o-direct", "on")
    if "fr3" not in volumes:
        gluster("volume", "create", "fr3", "replica", "3",
                *(f"127.0.0.2:{BRICKS}/fr3-{i}" for i in (1, 2, 3)), "force")
        gluster("volume", "set", "fr3", "group", "virt")
    for volume in ("fv1", "fr3"):
        gluster("volume", "start", volume, "force")
    fd = os.open(CONFIG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"GLUSTER_SERVERS=127.0.0.1,127.0.0.2\nGLUSTER_VOLUME=fv1\n"
                     f"GLUSTER_MOUNT_BASE={MOUNT_BASE}\nGLUSTER_MOUNT_TIMEOUT={MOUNT_TIMEOUT}\n"
                     "GLUSTER_POOL_REPLICA_VOLUME=fr3\nGLUSTER_POOL_UNSAFE_VOLUME=gvoff\n"
                     "GLUSTER_UNMOUNT_DELAY=0\n")  # scenarios need a volume unmounted by detach


# -- scenarios -----------------------------------------------------------------

SCENARIOS = []


def scenario(title, injected):
    def register(function):
        SCENARIOS.append((function.__name__, title, injected, function))
        return function
    return register


@scenario("only brick dies during writes", "SIGKILL the 1 brick of fv1 mid-write through /dev/loopN")
def brick_dies(report):
    env = new_disk(256)
    try:
        device = attach(env)
        seed = 11
        writer = subprocess.Popen([WRITER, device, "0", "200", str(seed), "0.02"],
                                  stdout=subprocess.PIPE, text=True)
        acknowledged = []
        for line in writer.stdout:
            acknowledged.append(int(line.split()[1]))
            if len(acknowledged) == 20:
                break
        started = time.monotonic()
        killed = brick_pids("fv1")
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        rest = writer.communicate(timeout=60)[0].splitlines()
        failed_after = time.monotonic() - started
        acknowledged += [int(line.split()[1]) for line in rest if line.startswith("ok ")]
        errors = [line for line in rest if line.startswith("error ")]
        if writer.returncode != 3 or not errors:
            raise Wrong("writes kept succeeding with the only brick dead (silent success)")
        restart_bricks("fv1", 1, killed)
        wait_for("fv1 answering again", lambda: provider("attach", env).returncode == 0, 60)
        provider("detach", env, check=True)
        device = attach(env)
        bad = verify_blocks(device, seed, acknowledged)
        report(f"write failed with '{errors[0][6:]}' after {failed_after:.1f} s; "
               f"{len(acknowledged)} acknowledged blocks", failed_after,
               f"{len(acknowledged) - len(bad)}/{len(acknowledged)} acknowledged MiB intact")
        if bad:
            raise Wrong(f"acknowledged blocks lost: {bad[:10]}")
    finally:
        discard(env)


@scenario("replica 3 loses a brick mid-write", "SIGKILL 1 of 3 bricks of fr3 during a 256 MiB write")
def replica_brick_dies(report):
    env = new_disk(512, EXTP_POOL="replica")
    try:
        device = attach(env)
        seed = 22
        started = time.monotonic()
        writer = subprocess.Popen([WRITER, device, "0", "256", str(seed)],
                                  stdout=subprocess.PIPE, text=True)
        acknowledged = []
        for line in writer.stdout:
            acknowledged.append(int(line.split()[1]))
            if len(acknowledged) == 32:
                killed = brick_pids("fr3")[1:2]
                os.kill(killed[0], signal.SIGKILL)
        writer.wait(timeout=300)
        if writer.returncode != 0 or len(acknowledged) != 256:
            raise Wrong(f"the write failed after {len(acknowledged)} MiB with one brick of three down")
        wrote = time.monotonic() - started
        restart_bricks("fr3", 3, killed)
        wait_for("heal of fr3", lambda: heal_entries("fr3") == 0, 180)
        provider("detach", env, check=True)
        device = attach(env)
        bad = verify_blocks(device, seed, range(256))
        report(f"write completed in {wrote:.1f} s; healed", time.monotonic() - started,
               f"{256 - len(bad)}/256 MiB intact")
        if bad:
            raise Wrong(f"blocks differ after heal: {bad[:10]}")
    finally:
        discard(env)


@scenario("glusterd down", "SIGKILL glusterd; attach a mounted disk, then one needing a new mount")
def glusterd_down(report):
    mounted = new_disk(16)
    unmounted = new_disk(16, EXTP_POOL="replica")
    pid = None
    try:
        attach(mounted)
        provider("detach", unmounted, check=True)  # fr3 is now not mounted
        pid = int(open(os.path.join(STATE, "glusterd.pid")).read())
        os.kill(pid, signal.SIGKILL)
        wait_for("glusterd to die", lambda: not os.path.exists(f"/proc/{pid}/cmdline")
                 or not open(f"/proc/{pid}/cmdline").read(), 10)
        warm = provider("attach", mounted)
        if warm.returncode != 0:
            raise Wrong(f"attach of a mounted disk failed: {warm.stderr.strip()}")
        started = time.monotonic()
        cold = provider("attach", unmounted)
        took = time.monotonic() - started
        reason = cold.stderr.strip().splitlines()[-1] if cold.stderr.strip() else ""
        report(f"mounted disk attached; new mount failed in {took:.1f} s: {reason[reason.find('error:'):]}",
               took, "n/a (no data written)")
        if cold.returncode == 0 or "127.0.0.1:24007" not in reason:
            raise Wrong(f"expected a failure naming 127.0.0.1:24007, got: {cold.stderr.strip()}")
        if took > MOUNT_TIMEOUT + 10:
            raise Wrong(f"the failure took {took:.0f} s, over the bound of {MOUNT_TIMEOUT + 10} s")
    finally:
        harness("start-glusterd")
        discard(mounted)
        discard(unmounted)


def _client_pid(volume):
    pid = fuse_client_pid(os.path.join(MOUNT_BASE, volume))
    if pid is None:
        raise Wrong(f"no client process for volume {volume}")
    return pid


@scenario("stale FUSE mount", "SIGKILL the FUSE client of fv1 under an attached disk, idle then held")
def stale_mount(report):
    env = new_disk(16)
    try:
        device = attach(env)
        seed = 33
        subprocess.run([WRITER, device, "0", "4", str(seed)], check=True, capture_output=True)
        os.kill(_client_pid("fv1"), signal.SIGKILL)
        started = time.monotonic()
        again = provider("attach", env, check=True)
        took = time.monotonic() - started
        new_device = again.stdout.split("\n")[0]
        bad = verify_blocks(new_device, seed, range(4))
        # Now with the loop device held open, as by a running VM.
        holder = subprocess.Popen(["sleep", "600"], stdin=open(new_device, "rb"))
        try:
            os.kill(_client_pid("fv1"), signal.SIGKILL)
            held = provider("attach", env)
        finally:
            holder.kill()
            holder.wait()
        report(f"remounted and re-attached ({device} -> {new_device}); held device reported",
               took, f"{4 - len(bad)}/4 MiB intact")
        if bad:
            raise Wrong(f"data lost across the remount: {bad}")
        if held.returncode == 0 or new_device not in held.stderr or f"pid {holder.pid}" not in held.stderr:
            raise Wrong(f"a held loop device on a dead mount was not reported: {held.stderr.strip()}")
        provider("detach", env, check=True)
    finally:
        discard(env)


def _kill_when_partial_appears(command_env, action, partial):
    process = start_script(action, command_env)
    # Polled closely: a snapshot of 512 MiB is done in a few tenths of a second.
    deadline = time.monotonic() + 60
    while not os.path.exists(partial):
        if time.monotonic() > deadline or process.poll() is not None:
            raise Wrong(f"{partial} did not appear while {action} ran")
        time.sleep(0.01)
    time.sleep(0.05)
    if process.poll() is not None:
        raise RuntimeError(f"{action} finished before it could be killed; give it more to do")
    process.kill()
    process.wait()


@scenario("provider killed mid-operation", "SIGKILL during a full-preallocation create, then a snapshot")
def killed_midway(report):
    name = f"fault-{uuid.uuid4().hex[:10]}.ext.disk0"
    env = {"VOL_NAME": name, "EXTP_PREALLOCATION": "full"}
    snap = {"VOL_NAME": name + ".snap"}
    started = time.monotonic()
    try:
        _kill_when_partial_appears({**env, "VOL_SIZE": "2048"}, "create",
                                   os.path.join(os.path.dirname(image(name)), f".{name}.partial"))
        if os.path.exists(image(name)):
            raise Wrong("a killed create left a disk under its final name")
        provider("create", {**env, "VOL_SIZE": "512"}, check=True)
        device = attach(env)
        subprocess.run([WRITER, device, "0", "8", "44"], check=True, capture_output=True)
        _kill_when_partial_appears({"VOL_NAME": name, "VOL_SNAPSHOT_NAME": snap["VOL_NAME"]},
                                   "snapshot", os.path.join(os.path.dirname(image(name)),
                                                            f".{snap['VOL_NAME']}.partial"))
        if os.path.exists(image(snap["VOL_NAME"])):
            raise Wrong("a killed snapshot left a snapshot under its final name")
        provider("snapshot", {"VOL_NAME": name, "VOL_SNAPSHOT_NAME": snap["VOL_NAME"]}, check=True)
        snap_device = attach(snap)
        bad = verify_blocks(snap_device, 44, range(8))
        report("no partial disk under a final name; both re-runs succeeded",
               time.monotonic() - started, f"{8 - len(bad)}/8 MiB intact in the snapshot")
        if bad:
            raise Wrong(f"snapshot differs: {bad}")
    finally:
        discard(snap)
        discard(env)


@scenario("load", "32 concurrent create/attach/detach/grow/remove loops + 8 concurrent attaches of one disk")
def load(report):
    shared = new_disk(16)
    stop_at = time.monotonic() + LOAD_SECONDS
    errors = []
    counts = {"ops": 0}

    def call(action, env):
        result = provider(action, env)
        counts["ops"] += 1
        if result.returncode != 0:
            errors.append(f"{action} {env.get('VOL_NAME')}: {result.stderr.strip()[-200:]}")
        return result

    def worker(index):
        while time.monotonic() < stop_at and not errors:
            env = {"VOL_NAME": f"load-{index}-{uuid.uuid4().hex[:6]}.ext.disk0"}
            call("create", {**env, "VOL_SIZE": "8"})
            call("attach", env)
            call("grow", {**env, "VOL_SIZE": "8", "VOL_NEW_SIZE": "16"})
            call("attach", env)
            call("detach", env)
            call("remove", env)

    def attacher(_):
        devices = set()
        while time.monotonic() < stop_at and not errors:
            result = call("attach", shared)
            devices.add(result.stdout.split("\n")[0])
        return devices

    started = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
            workers = [pool.submit(worker, i) for i in range(32)]
            attachers = [pool.submit(attacher, i) for i in range(8)]
            devices = set().union(*(f.result() for f in attachers))
            for future in workers:
                future.result()
        took = time.monotonic() - started
        mounts = [line.split()[4] for line in open("/proc/self/mountinfo")
                  if line.split()[4].startswith(MOUNT_BASE + "/")]
        loops_of_shared = loop_devices_of(image(shared["VOL_NAME"]))
        report(f"{counts['ops']} calls in {took:.0f} s, {len(errors)} errors; mounts {len(mounts)}; "
               f"shared disk on {len(loops_of_shared)} loop device", took, "n/a")
        if errors:
            raise Wrong(f"{len(errors)} errors, first: {errors[0]}")
        if len(mounts) != len(set(mounts)) or len(mounts) > 1:
            raise Wrong(f"more than one mount per volume: {mounts}")
        if len(devices) != 1 or len(loops_of_shared) != 1:
            raise Wrong(f"the shared disk was mapped as {devices} / {loops_of_shared}")
    finally:
        discard(shared)
    leftovers = [n for n in os.listdir(os.path.dirname(image("x"))) if n.startswith(("load-", ".load-"))] \
        if os.path.isdir(os.path.dirname(image("x"))) else []
    leftover_loops = [d for d, b in _loops() if b.startswith(MOUNT_BASE + "/")]
    if leftovers or leftover_loops:
        raise Wrong(f"left behind: {leftovers[:5]} {leftover_loops}")


def _loops():
    out = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                         capture_output=True, text=True, check=True).stdout
    return [tuple(line.split(None, 1)) for line in out.splitlines() if len(line.split(None, 1)) == 2]


@scenario("strict-o-direct off", "attach a disk on a volume with performance.strict-o-direct off")
def unsafe_volume(report):
    env = new_disk(8, EXTP_POOL="unsafe")
    try:
        started = time.monotonic()
        refused = provider("attach", env)
        took = time.monotonic() - started
        allowed = provider("attach", {**env, "GLUSTER_ALLOW_STRICT_O_DIRECT_OFF": "yes"})
        report("refused with the fix named; allowed with a warning when configured", took, "n/a")
        if refused.returncode == 0 or "performance.strict-o-direct on" not in refused.stderr:
            raise Wrong(f"not refused clearly: {refused.stderr.strip()}")
        if allowed.returncode != 0 or "warning" not in allowed.stderr:
            raise Wrong(f"the override did not work with a warning: {allowed.stderr.strip()}")
    finally:
        discard(env)


HOSTS = os.path.join(os.path.dirname(HERE), "harness", "gluster_hosts.py")
HOSTS_CONFIG = os.path.join(STATE, "hosts.env")


@scenario("several servers", "glusterd of the primary of 3 hosts (network namespaces) killed; "
          "then a server list with duplicates")
def several_servers(report):
    subprocess.run(["/usr/bin/python3", HOSTS, "up", "3"], check=True, capture_output=True, timeout=300)
    fd = os.open(HOSTS_CONFIG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("GLUSTER_SERVERS=10.78.0.11,10.78.0.12,10.78.0.13\nGLUSTER_VOLUME=mr3\n"
                     f"GLUSTER_MOUNT_BASE={STATE}/hosts-mnt\nGLUSTER_MOUNT_TIMEOUT=60\n"
                     "GLUSTER_UNMOUNT_DELAY=0\n")
    env = {"VOL_NAME": f"fault-{uuid.uuid4().hex[:10]}.ext.disk0"}
    duplicated = {**env, "EXTP_SERVERS": "10.78.0.12,10.78.0.12,10.78.0.13,10.78.0.12"}

    def hosts_provider(action, environment, check=None):
        return run(action, environment, check=check, config=HOSTS_CONFIG)

    try:
        hosts_provider("create", {**env, "VOL_SIZE": "16"}, check=True)
        device = hosts_provider("attach", env, check=True).stdout.split("\n")[0]
        subprocess.run([WRITER, device, "0", "8", "55"], check=True, capture_output=True)
        hosts_provider("detach", env, check=True)  # the volume is unmounted again
        pid = int(open("/tmp/ganeti-gluster-hosts/host1/glusterd.pid").read())
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        attached = hosts_provider("attach", env)
        took = time.monotonic() - started
        if attached.returncode != 0:
            raise Wrong(f"attach failed with a backup server up: {attached.stderr.strip()}")
        bad = verify_blocks(attached.stdout.split("\n")[0], 55, range(8))
        hosts_provider("detach", env, check=True)
        again = hosts_provider("attach", duplicated)
        if again.returncode != 0:
            raise Wrong(f"a server list with duplicates broke the mount: {again.stderr.strip()}")
        report(f"mounted from a backup server in {took:.1f} s; duplicated list mounted too",
               took, f"{8 - len(bad)}/8 MiB intact")
        if bad:
            raise Wrong(f"data differs: {bad}")
    finally:
        hosts_provider("detach", duplicated)
        hosts_provider("remove", duplicated)
        subprocess.run(["/usr/bin/python3", HOSTS, "down"], capture_output=True, timeout=300)


# -- the table -----------------------------------------------------------------

HUNG_IO_TIMEOUT = 10


@scenario("hung FUSE client", f"SIGSTOP the FUSE client of fv1 (io_timeout {HUNG_IO_TIMEOUT} s) during "
          "attach, create and a snapshot's copy, with a second script waiting on the disk")
def hung_client(report):
    env = new_disk(512, GLUSTER_IO_TIMEOUT=str(HUNG_IO_TIMEOUT))
    snap = {"VOL_NAME": env["VOL_NAME"] + ".snap", "GLUSTER_IO_TIMEOUT": str(HUNG_IO_TIMEOUT)}
    pid = None
    try:
        device = attach(env)
        subprocess.run([WRITER, device, "0", "256", "55"], check=True, capture_output=True)
        times = {}
        pid = _client_pid("fv1")
        os.kill(pid, signal.SIGSTOP)
        for action, extra in (("attach", {}), ("create", {"VOL_NAME": "fault-hung.ext.disk0",
                                                          "VOL_SIZE": "8"})):
            started = time.monotonic()
            result = provider(action, {**env, **extra}, timeout=120)
            times[action] = time.monotonic() - started
            if result.returncode == 0 or f"pid {pid} is stopped" not in result.stderr:
                raise Wrong(f"{action} on a stopped client: {result.stderr.strip() or 'succeeded'}")
        os.kill(pid, signal.SIGCONT)
        # The snapshot's copy stalls half-way; an attach of the same disk waits on its lock.
        partial = os.path.join(os.path.dirname(image(env["VOL_NAME"])), f".{snap['VOL_NAME']}.partial")
        copying = start_script("snapshot", {**env, "VOL_SNAPSHOT_NAME": snap["VOL_NAME"]})
        wait_for("the snapshot's partial file", lambda: os.path.exists(partial), 30)
        os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        waiting = start_script("attach", env)
        _, stderr = copying.communicate(timeout=120)
        times["snapshot"] = time.monotonic() - stopped_at
        waiting.communicate(timeout=120)
        times["attach waiting on it"] = time.monotonic() - stopped_at
        if copying.returncode == 0 or f"pid {pid} is stopped" not in stderr:
            raise Wrong(f"a snapshot stalled mid-copy: {stderr.strip() or 'succeeded'}")
        os.kill(pid, signal.SIGCONT)
        pid = None
        bad = verify_blocks(attach(env), 55, range(256))
        slowest = max(times.values())
        report("each failed naming the stopped client: " +
               ", ".join(f"{what} {seconds:.1f} s" for what, seconds in times.items()) +
               "; the disk works at once after SIGCONT", slowest, f"{256 - len(bad)}/256 MiB intact")
        if slowest > 2 * HUNG_IO_TIMEOUT + 5:
            raise Wrong(f"a script took {slowest:.1f} s, more than twice io_timeout")
        if bad:
            raise Wrong(f"data changed: {bad}")
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)
        discard(snap)
        discard(env)


def main(names):
    setup()
    chosen = [s for s in SCENARIOS if not names or s[0] in names]
    rows, wrong = [], 0
    for key, title, injected, function in chosen:
        row = {"scenario": title, "injected": injected, "outcome": "", "time": "", "data": ""}

        def report(outcome, seconds, data, row=row):
            row.update(outcome=outcome, time=f"{seconds:.1f} s", data=data)

        print(f"faults: running {key} ...", file=sys.stderr, flush=True)
        try:
            function(report)
            row["ok"] = "ok"
        except Wrong as exc:
            row.update(ok="WRONG", outcome=f"{row['outcome']} -- {exc}".strip(" -"))
            wrong += 1
        except Exception as exc:  # the harness itself broke: still a wrong row
            row.update(ok="WRONG", outcome=f"harness error: {type(exc).__name__}: {exc}")
            wrong += 1
        rows.append(row)
    print("| scenario | injected | outcome | time to outcome | data intact | verdict |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['scenario']} | {row['injected']} | {row['outcome']} | {row['time']} | "
              f"{row['data']} | {row['ok']} |")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
