#!/usr/bin/python3
"""A private GlusterFS on this machine for tests and the demo, without systemd.

  local_gluster.py up       start glusterd and create the test volumes
  local_gluster.py down     stop and remove everything `up` made
  local_gluster.py cli ...  run the gluster CLI against the private glusterd
  local_gluster.py env      print the path of the provider configuration
  local_gluster.py start-glusterd   start glusterd again after a test killed it

glusterd runs in a private mount namespace in which /var/lib/glusterd,
/var/log/glusterfs and /run/gluster are directories of the state dir, so it
touches nothing of the machine's own GlusterFS state. Bricks live on host
127.0.0.2 (glusterd refuses localhost) in the state dir. Volumes:
  gv0  1 brick, performance.strict-o-direct on
  gr3  replica 3 (three bricks on one host), group virt
  gvoff  1 brick, performance.strict-o-direct off (unsafe: for tests that
       check the provider refuses it)
`down` works from any state an earlier run left: it detaches loop devices
backed by files in the state dir, unmounts its mounts (lazily if dead),
stops only daemons whose pid files are in the state dir, and removes it.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

STATE = os.environ.get("GLUSTER_TEST_DIR", "/tmp/ganeti-gluster-test")
BRICK_HOST = "127.0.0.2"
PIDFILE = os.path.join(STATE, "glusterd.pid")
CONFIG = os.path.join(STATE, "gluster.env")
MOUNT_BASE = os.path.join(STATE, "mnt")
PRIVATE_DIRS = {"lib": "/var/lib/glusterd", "log": "/var/log/glusterfs", "run": "/run/gluster"}
START_TIMEOUT = 30
STOP_TIMEOUT = 10


def log(message):
    print(f"local-gluster: {message}", file=sys.stderr, flush=True)


def run(args, check=True, timeout=60):
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise SystemExit(f"local-gluster: {' '.join(args)} failed: "
                         f"{(result.stderr or result.stdout).strip()}")
    return result


def _pid_alive(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"gluster" in handle.read()
    except OSError:
        return False


def glusterd_pid():
    try:
        pid = int(open(PIDFILE).read().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def cli(*args, check=True, timeout=60):
    pid = glusterd_pid()
    if pid is None:
        raise SystemExit("local-gluster: glusterd is not running (make gluster-up)")
    return run(["nsenter", "-t", str(pid), "-m", "gluster", "--mode=script", *args],
               check=check, timeout=timeout)


def _daemon_pids():
    pids = []
    for path in [PIDFILE] + glob.glob(os.path.join(STATE, "run", "**", "*.pid"), recursive=True):
        try:
            pid = int(open(path).read().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(pid):
            pids.append(pid)
    return pids


def _mounts_under(prefix):
    points = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def _loops_under(prefix):
    loops = []
    for entry in glob.glob("/sys/block/loop*/loop/backing_file"):
        try:
            backing = open(entry).read().strip()
        except OSError:
            continue
        if backing.startswith(prefix + "/"):
            loops.append("/dev/" + entry.split("/")[3])
    return loops


def down():
    for device in _loops_under(STATE):
        log(f"detaching {device}")
        run(["losetup", "--detach", device], check=False)
    for point in _mounts_under(STATE):
        log(f"unmounting {point}")
        if run(["umount", point], check=False).returncode != 0:
            run(["umount", "--lazy", point], check=False)
    pids = _daemon_pids()
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    if pids:
        log(f"stopped daemons {' '.join(map(str, pids))}")
    shutil.rmtree(STATE, ignore_errors=True)


def _healthy():
    if glusterd_pid() is None or not os.path.exists(CONFIG):
        return False
    result = cli("volume", "status", check=False, timeout=20)
    return result.returncode == 0 and all(v in result.stdout for v in ("gv0", "gr3", "gvoff"))


def start_glusterd():
    """Starts glusterd in its private mount namespace; a restarted glusterd
    adopts the bricks still running. True once it answers."""
    if glusterd_pid() is None:
        os.makedirs("/run/gluster", exist_ok=True)
        binds = [f"mount --bind {os.path.join(STATE, name)} {target}"
                 for name, target in PRIVATE_DIRS.items()]
        script = " && ".join(binds + [f"exec /usr/sbin/glusterd -p {PIDFILE}"])
        run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script])
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if glusterd_pid() and cli("pool", "list", check=False, timeout=10).returncode == 0:
            return True
        time.sleep(0.2)
    return False


def up():
    if _healthy():
        log(f"already running (state in {STATE})")
        return
    down()
    for name in PRIVATE_DIRS:
        os.makedirs(os.path.join(STATE, name), mode=0o700)
    os.makedirs(os.path.join(STATE, "bricks"), mode=0o700)
    # The option groups (group virt); not the hooks, which would set up
    # Samba, CTDB or NFS-Ganesha on this machine for every volume started.
    shutil.copytree("/var/lib/glusterd/groups", os.path.join(STATE, "lib", "groups"))
    if not start_glusterd():
        down()
        raise SystemExit(f"local-gluster: glusterd did not answer within {START_TIMEOUT} s")
    bricks = os.path.join(STATE, "bricks")
    cli("volume", "create", "gv0", f"{BRICK_HOST}:{bricks}/gv0", "force")
    cli("volume", "set", "gv0", "performance.strict-o-direct", "on")
    cli("volume", "create", "gr3", "replica", "3",
        *(f"{BRICK_HOST}:{bricks}/gr3-{i}" for i in (1, 2, 3)), "force")
    cli("volume", "set", "gr3", "group", "virt")
    cli("volume", "create", "gvoff", f"{BRICK_HOST}:{bricks}/gvoff", "force")
    cli("volume", "set", "gvoff", "performance.strict-o-direct", "off")
    for volume in ("gv0", "gr3", "gvoff"):
        cli("volume", "start", volume)
    fd = os.open(CONFIG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"""# Provider configuration for the private test GlusterFS
GLUSTER_SERVERS=127.0.0.1,{BRICK_HOST}
GLUSTER_VOLUME=gv0
GLUSTER_MOUNT_BASE={MOUNT_BASE}
GLUSTER_POOL_REPLICA_VOLUME=gr3
GLUSTER_POOL_UNSAFE_VOLUME=gvoff
# Tests look at the mounts right after a script; the delay has tests of its own.
GLUSTER_UNMOUNT_DELAY=0
""")
    log(f"up: volumes gv0, gr3 and gvoff on {BRICK_HOST}, provider config {CONFIG}")


def main(argv):
    if os.geteuid() != 0:
        raise SystemExit("local-gluster: must run as root")
    command = argv[0] if argv else ""
    if command == "up":
        up()
    elif command == "down":
        down()
        log("down")
    elif command == "cli":
        result = cli(*argv[1:], check=False)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.returncode
    elif command == "start-glusterd":
        if not start_glusterd():
            raise SystemExit("local-gluster: glusterd did not start")
    elif command == "env":
        print(CONFIG)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
