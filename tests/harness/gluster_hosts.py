#!/usr/bin/python3
"""Several GlusterFS "hosts" on this machine, one network namespace each.

  gluster_hosts.py up [N [M]]  N hosts (default 3), a replica-M volume `mr3` (M=1: plain)
                               on the first M of them (default: all N)
  gluster_hosts.py down      remove all of it, from any state
  gluster_hosts.py cli I ... run the gluster CLI on host I

Host I (1-based) has address 10.78.0.1I on a veth whose other end is on the
bridge gfbr0 (10.78.0.1) in the root namespace, so the provider reaches the
hosts from here and no traffic leaves this machine's own namespaces. Each
glusterd runs in a private mount namespace with its own /var/lib/glusterd,
/var/log/glusterfs and /run/gluster under the state directory (and a
private /run).
"""

import os
import shutil
import signal
import subprocess
import sys
import time

STATE = os.environ.get("GLUSTER_HOSTS_DIR", "/tmp/ganeti-gluster-hosts")
BRIDGE = "gfbr0"
SUBNET = "10.78.0"
PRIVATE_DIRS = {"lib": "/var/lib/glusterd", "log": "/var/log/glusterfs", "run": "/run/gluster"}


def log(message):
    print(f"gluster-hosts: {message}", file=sys.stderr, flush=True)


def sh(*args, check=True, timeout=60):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise SystemExit(f"gluster-hosts: {' '.join(args)}: {(result.stderr or result.stdout).strip()}")
    return result


def address(index):
    return f"{SUBNET}.1{index}"


def namespace(index):
    return f"gfhost{index}"


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


def up(count, in_volume=None):
    in_volume = in_volume or count
    down()
    os.makedirs(STATE, mode=0o700)
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    os.makedirs("/run/gluster", exist_ok=True)
    for index in range(1, count + 1):
        ns, outside = namespace(index), f"gfh{index}o"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", f"gfh{index}i")
        sh("ip", "link", "set", f"gfh{index}i", "netns", ns)
        sh("ip", "link", "set", outside, "master", BRIDGE, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{address(index)}/24", "dev", f"gfh{index}i")
        sh("ip", "-n", ns, "link", "set", f"gfh{index}i", "up")
        for name in (*PRIVATE_DIRS, "brick"):
            os.makedirs(os.path.join(host_dir(index), name), mode=0o700)
        shutil.copytree("/var/lib/glusterd/groups", os.path.join(host_dir(index), "lib", "groups"))
        start_glusterd(index)
    for index in range(2, in_volume + 1):
        cli(1, "peer", "probe", address(index))
    deadline = time.monotonic() + 60
    while cli(1, "pool", "list").stdout.count("Connected") < in_volume:
        if time.monotonic() > deadline:
            raise SystemExit("gluster-hosts: peers did not connect")
        time.sleep(0.5)
    bricks = [f"{address(i)}:{host_dir(i)}/brick/mr3" for i in range(1, in_volume + 1)]
    if in_volume > 1:
        cli(1, "volume", "create", "mr3", "replica", str(in_volume), *bricks, "force")
        cli(1, "volume", "set", "mr3", "group", "virt")
    else:  # GlusterFS has no replica 1, and group virt needs replication
        cli(1, "volume", "create", "mr3", *bricks, "force")
        cli(1, "volume", "set", "mr3", "performance.strict-o-direct", "on")
    cli(1, "volume", "start", "mr3")
    log(f"up: {count} hosts at {', '.join(address(i) for i in range(1, count + 1))}, "
        f"volume mr3 on the first {in_volume}")


def down():
    for index in hosts_present():
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
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    for index in range(1, 10):
        sh("ip", "netns", "delete", namespace(index), check=False)
        sh("ip", "link", "delete", f"gfh{index}o", check=False)
    sh("ip", "link", "delete", BRIDGE, check=False)
    shutil.rmtree(STATE, ignore_errors=True)


def main(argv):
    command = argv[0] if argv else ""
    if command == "up":
        up(int(argv[1]) if len(argv) > 1 else 3, int(argv[2]) if len(argv) > 2 else None)
    elif command == "down":
        down()
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
