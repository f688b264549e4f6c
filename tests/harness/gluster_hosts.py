#!/usr/bin/python3
"""Several GlusterFS "hosts" on this machine, one network namespace each.

  gluster_hosts.py up [N [M]]  N hosts (default 3), a replica-M volume `mr3` (M=1: plain)
                               on the first M of them (default: all N)
  gluster_hosts.py production  3 hosts serving the volume shapes operators run
                               (PRODUCTION_VOLUMES): replica 3, arbiter, 2 x 3
  gluster_hosts.py down      remove all of it, from any state
  gluster_hosts.py cli I ... run the gluster CLI on host I
  gluster_hosts.py kill I    kill host I's glusterd and bricks (SIGKILL: a host that died)
  gluster_hosts.py revive I  start host I's glusterd again (it restarts its bricks)

Host I (1-based) has address 10.78.0.1I on a veth whose other end is on the
bridge gfbr0 (10.78.0.1) in the root namespace, so the provider reaches the
hosts from here and no traffic leaves this machine's own namespaces. Each
glusterd runs in a private mount namespace with its own /var/lib/glusterd,
/var/log/glusterfs and /run/gluster under the state directory (and a
private /run).

The e2e puts the hosts on its own bridge instead, beside its Ganeti nodes:
GLUSTER_HOSTS_BRIDGE names an existing bridge (left in place by `down`),
GLUSTER_HOSTS_SUBNET its /24 and GLUSTER_HOSTS_FIRST the last octet of host 1
minus one (default 10: host I is SUBNET.1I). GLUSTER_HOSTS_PREFIX (default
gf) starts the names of the namespaces (gfhostI), veths (gfhIo) and own
bridge (gfbr0), so that a second set of hosts (the benchmarks') can run
beside the e2e's, with its own GLUSTER_HOSTS_DIR and SUBNET.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

STATE = os.environ.get("GLUSTER_HOSTS_DIR", "/tmp/ganeti-gluster-hosts")
PREFIX = os.environ.get("GLUSTER_HOSTS_PREFIX", "gf")
# An existing bridge to join (the e2e's); without it the hosts get a bridge of their own.
SHARED_BRIDGE = os.environ.get("GLUSTER_HOSTS_BRIDGE", "")
BRIDGE = SHARED_BRIDGE or f"{PREFIX}br0"
SUBNET = os.environ.get("GLUSTER_HOSTS_SUBNET", "10.78.0")
FIRST = int(os.environ.get("GLUSTER_HOSTS_FIRST", "10"))
# The shapes of production volumes for VM images, all with group virt
# (sharding at 64 MB, strict-o-direct, client and server quorum):
# name -> (gluster volume create arguments between the name and the bricks,
# bricks per host). Bricks go round the hosts, so each replica set spans all three.
PRODUCTION_VOLUMES = {
    "virt3": (["replica", "3"], 1),
    "arb3": (["replica", "3", "arbiter", "1"], 1),
    "dr23": (["replica", "3"], 2),
}
PRIVATE_DIRS = {"lib": "/var/lib/glusterd", "log": "/var/log/glusterfs", "run": "/run/gluster"}


def log(message):
    print(f"gluster-hosts: {message}", file=sys.stderr, flush=True)


def sh(*args, check=True, timeout=60):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise SystemExit(f"gluster-hosts: {' '.join(args)}: {(result.stderr or result.stdout).strip()}")
    return result


def address(index):
    return f"{SUBNET}.{FIRST + index}"


def namespace(index):
    return f"{PREFIX}host{index}"


def veth(index, end):
    """Host I's veth: end "o" on the bridge, "i" in its namespace."""
    return f"{PREFIX}h{index}{end}"


def host_dir(index):
    return os.path.join(STATE, f"host{index}")


def glusterd_pid(index):
    try:
        pid = int(open(os.path.join(host_dir(index), "glusterd.pid")).read())
        return pid if b"gluster" in open(f"/proc/{pid}/cmdline", "rb").read() else None
    except (OSError, ValueError):
        return None


def cli(index, *args, check=True):
    pid = glusterd_pid(index)
    if pid is None:
        raise SystemExit(f"gluster-hosts: glusterd of host {index} is not running")
    return sh("nsenter", "-t", str(pid), "-m", "-n", "gluster", "--mode=script", *args,
              check=check, timeout=120)


def hosts_present():
    return sorted(int(d[len("host"):]) for d in os.listdir(STATE) if d.startswith("host")) \
        if os.path.isdir(STATE) else []


def start_glusterd(index):
    base = host_dir(index)
    # A private /run too: glusterd's CLI socket is /run/glusterd.socket.
    binds = " && ".join(["mount -t tmpfs tmpfs /run", "mkdir -p /run/gluster"]
                        + [f"mount --bind {base}/{name} {target}" for name, target in PRIVATE_DIRS.items()])
    sh("ip", "netns", "exec", namespace(index), "unshare", "--mount", "--propagation", "private",
       "--", "sh", "-c", f"{binds} && exec /usr/sbin/glusterd -p {base}/glusterd.pid")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if glusterd_pid(index) and cli(index, "pool", "list", check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"gluster-hosts: glusterd of host {index} did not answer")


def start_hosts(count):
    """Hosts 1..count, each with its network namespace and glusterd, all peers."""
    down()
    os.makedirs(STATE, mode=0o700)
    if not SHARED_BRIDGE:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
    os.makedirs("/run/gluster", exist_ok=True)
    for index in range(1, count + 1):
        ns, outside, inside = namespace(index), veth(index, "o"), veth(index, "i")
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        sh("ip", "link", "set", inside, "netns", ns)
        sh("ip", "link", "set", outside, "master", BRIDGE, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{address(index)}/24", "dev", inside)
        sh("ip", "-n", ns, "link", "set", inside, "up")
        for name in (*PRIVATE_DIRS, "brick"):
            os.makedirs(os.path.join(host_dir(index), name), mode=0o700)
        shutil.copytree("/var/lib/glusterd/groups", os.path.join(host_dir(index), "lib", "groups"))
        start_glusterd(index)


def probe_peers(count):
    for index in range(2, count + 1):
        cli(1, "peer", "probe", address(index))
    deadline = time.monotonic() + 60
    while cli(1, "pool", "list").stdout.count("Connected") < count:
        if time.monotonic() > deadline:
            raise SystemExit("gluster-hosts: peers did not connect")
        time.sleep(0.5)


def brick(index, volume, number=0):
    return f"{address(index)}:{host_dir(index)}/brick/{volume}{number or ''}"


def up(count, in_volume=None):
    in_volume = in_volume or count
    start_hosts(count)
    probe_peers(in_volume)
    bricks = [brick(i, "mr3") for i in range(1, in_volume + 1)]
    if in_volume > 1:
        cli(1, "volume", "create", "mr3", "replica", str(in_volume), *bricks, "force")
        cli(1, "volume", "set", "mr3", "group", "virt")
    else:  # GlusterFS has no replica 1, and group virt needs replication
        cli(1, "volume", "create", "mr3", *bricks, "force")
        cli(1, "volume", "set", "mr3", "performance.strict-o-direct", "on")
    cli(1, "volume", "start", "mr3")
    log(f"up: {count} hosts at {', '.join(address(i) for i in range(1, count + 1))}, "
        f"volume mr3 on the first {in_volume}")


def production():
    """Three hosts serving PRODUCTION_VOLUMES (force: the bricks are
    directories on this machine's root file system)."""
    start_hosts(3)
    probe_peers(3)
    for volume, (layout, per_host) in PRODUCTION_VOLUMES.items():
        bricks = [brick(i, volume, n) for n in range(per_host) for i in (1, 2, 3)]
        cli(1, "volume", "create", volume, *layout, *bricks, "force")
        cli(1, "volume", "set", volume, "group", "virt")
        cli(1, "volume", "start", volume)
    log(f"production: hosts {', '.join(address(i) for i in (1, 2, 3))}, "
        f"volumes {', '.join(PRODUCTION_VOLUMES)}")


def daemon_pids(index):
    """glusterd and brick processes of host I, from their pid files."""
    pids = []
    for root, _, files in os.walk(host_dir(index)):
        for name in files:
            if name.endswith(".pid"):
                try:
                    pid = int(open(os.path.join(root, name)).read())
                    if b"gluster" in open(f"/proc/{pid}/cmdline", "rb").read():
                        pids.append(pid)
                except (OSError, ValueError):
                    pass
    return pids


def kill(index):
    """Host I dies: every GlusterFS process in its network namespace, at once."""
    for pid in sh("ip", "netns", "pids", namespace(index), check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


def revive(index):
    """Host I comes back: its glusterd starts the bricks of the started volumes."""
    start_glusterd(index)


def down():
    for index in hosts_present():
        for pid in daemon_pids(index):
            os.kill(pid, signal.SIGKILL)
        kill(index)
    for index in range(1, 10):
        sh("ip", "netns", "delete", namespace(index), check=False)
        sh("ip", "link", "delete", veth(index, "o"), check=False)
    if not SHARED_BRIDGE:
        sh("ip", "link", "delete", BRIDGE, check=False)
    shutil.rmtree(STATE, ignore_errors=True)


def main(argv):
    command = argv[0] if argv else ""
    if command == "up":
        up(int(argv[1]) if len(argv) > 1 else 3, int(argv[2]) if len(argv) > 2 else None)
    elif command == "production":
        production()
    elif command == "down":
        down()
    elif command in ("kill", "revive"):
        (kill if command == "kill" else revive)(int(argv[1]))
    elif command == "cli":
        result = cli(int(argv[1]), *argv[2:], check=False)
        sys.stdout.write(result.stdout)
        return result.returncode
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
