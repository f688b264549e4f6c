"""A real Ganeti cluster on this machine, for make e2e.

Two platforms (E2E_PLATFORM): debian12 runs this machine's own Debian 12
Ganeti 3.0; debian13 runs both nodes in a Debian 13 root (tests/e2e/trixie-root:
Ganeti 3.1, GlusterFS 11, QEMU 10) that each node's mount namespace pivots
into, with STATE bind-mounted at the same path so that bricks and state read
the same from here and from inside. PLATFORM says which; host() turns a path
on a node into the path from here.

Node 1 lives in its own network namespace (veth to the root namespace,
address 10.79.0.11, a bridge for instance NICs), UTS namespace (host name
node1.example.com) and mount namespace (/etc/hosts from /etc/netns), held
open by an anchor process; every Ganeti command runs inside them, with a
clean environment. glusterd runs inside the same network namespace with its
own /var/lib/glusterd, so the provider talks to 10.79.0.11:24007 and nothing
leaves this machine's own namespaces.
"""

import os
import shutil
import signal
import subprocess
import time

NS = "gnte2e1"
NODE = "node1.example.com"
ADDRESS = "10.79.0.11"
CLUSTER = "cluster.example.com"
CLUSTER_ADDRESS = "10.79.0.10"
OUTSIDE = "10.79.0.1"
NODE2 = "node2.example.com"
ADDRESS2 = "10.79.0.12"
NS2 = "gnte2e2"
BRIDGE = "gnte2ebr"
NODE2_STATE = "/tmp/ganeti-e2e/node2"
STATE = "/tmp/ganeti-e2e"
GLUSTER_STATE = os.path.join(STATE, "gluster")
OS_DIR = "/srv/ganeti/os/e2e-dummy"
PROVIDER_CONFIG = "/etc/ganeti/extstorage/gluster.env"
# The provider's mount base (its default: the e2e configuration sets none).
# Only mounts under it are the provider's: the nodes' mount namespaces also
# inherit whatever the machine itself has mounted, GlusterFS mounts included.
MOUNT_BASE = "/run/ganeti-gluster"
# A distribute volume over two bricks, sharded (pool=spread): a disk's shards
# lie on both bricks.
SPREAD_VOLUME = "gv2"
SPREAD_SHARD = 4 << 20
CALL_LOG = "/var/log/ganeti/extstorage/gluster-calls.log"
CALL_LOG2 = os.path.join(NODE2_STATE, "log", "extstorage", "gluster-calls.log")
HOSTS = (f"127.0.0.1 localhost\n{ADDRESS} {NODE} node1\n{ADDRESS2} {NODE2} node2\n"
         f"{CLUSTER_ADDRESS} {CLUSTER}\n"
         + "".join(f"10.79.0.{100 + i} inst{i}.example.com\n" for i in range(1, 10)))
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# Files the cluster changes on the host, saved before and restored after.
FILE_STORAGE_PATHS = "/etc/ganeti/file-storage-paths"
HOOK_LINK = "/etc/ganeti/hooks/node-add-post.d/ganeti-gluster-join"
SAVED = ["/root/.ssh", PROVIDER_CONFIG, "/var/lib/ganeti", FILE_STORAGE_PATHS, HOOK_LINK]
# Node 2's brick for the node-add hook: a tmpfs (not the root file system,
# which glusterd refuses without force) seen only by node 2's glusterd.
JOIN_MOUNT = os.path.join(STATE, "join")
JOIN_BRICK = os.path.join(JOIN_MOUNT, "brick")


class Platform:
    """How one Debian release is run: its root as seen from here ("" for this
    machine's own), which Ganeti it has and where its commands differ."""

    def __init__(self, name, root, ganeti):
        self.name, self.root, self.ganeti = name, root, ganeti
        # 3.0's rename checks the new name's IP unless told not to (and with
        # --no-name-check asks on a terminal); 3.1 checks neither by default
        # and has no --no-ip-check on rename.
        self.rename_options = ["--no-ip-check"] if ganeti == "3.0" else []
        # Debian 13's 3.1.0~rc2 cannot export: socat 1.8 checks the peer's
        # certificate name, noded's is ganeti.example.com (ganeti#1839, fixed
        # upstream by #1840 after rc2).
        self.export_fails = ganeti == "3.1"

    def host(self, path):
        """A path on a node, as seen from this machine's root."""
        return self.root + path if self.root else path


PLATFORMS = {"debian12": ("", "3.0"), "debian13": ("/var/cache/ganeti-gluster-e2e/trixie", "3.1")}
_name = os.environ.get("E2E_PLATFORM", "debian12")
PLATFORM = Platform(_name, os.environ.get("E2E_TRIXIE_ROOT", PLATFORMS[_name][0]) if _name == "debian13"
                    else "", PLATFORMS[_name][1])


def host(path):
    return PLATFORM.host(path)


def log(message):
    print(f"e2e: {message}", flush=True)


def sh(*args, check=True, timeout=300, env=None, input=None):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env,
                            input=input)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-800:]}")
    return result


def anchor_pid(pidfile="anchor.pid"):
    """The process holding a node's namespaces open (node 1 by default), or None."""
    try:
        pid = int(open(os.path.join(STATE, pidfile)).read())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def anchor2_pid():
    return anchor_pid("anchor2.pid")


def node_command(anchor, args):
    """The argv of a command in a node's namespaces with a clean environment,
    as Ganeti's tools expect."""
    return ["nsenter", "-t", str(anchor), "-n", "-u", "-m", "env", "-i", f"PATH={CLEAN_PATH}",
            "HOME=/root", "LC_ALL=C", *args]


def _on_node(anchor, args, check, timeout):
    return sh(*node_command(anchor, args), check=check, timeout=timeout)


def inside(*args, check=True, timeout=600):
    """Runs a command on node 1."""
    return _on_node(anchor_pid(), args, check, timeout)


def inside2(*args, check=True, timeout=600):
    """Runs a command on node 2."""
    return _on_node(anchor2_pid(), args, check, timeout)


def glusterd_pid():
    return int(open(os.path.join(GLUSTER_STATE, "glusterd.pid")).read())


def gluster(*args):
    return sh("nsenter", "-t", str(glusterd_pid()), "-n", "-m", "gluster", "--mode=script", *args)


def noded_pid():
    return int(inside("cat", "/run/ganeti/ganeti-noded.pid").stdout)


def in_noded(*args, check=True):
    """A command in noded's mount namespace, where the provider's mounts are."""
    return sh("nsenter", "-t", str(noded_pid()), "-m", "-n", *args, check=check)


def up(builtin_gluster=False):
    """The cluster with node 1. builtin_gluster also enables Ganeti's own
    gluster template, on volume gv1 (for the side-by-side benchmark)."""
    down()
    os.makedirs(STATE, mode=0o700)
    save_host_files()
    # -- network: a veth into the node's namespace, a bridge for instances --
    # Both nodes' veths end on one bridge in the root namespace.
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "addr", "add", f"{OUTSIDE}/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    make_node_network(NS, "gnte2e1", ADDRESS)
    # -- the anchor: holds node 1's UTS and mount namespaces open --
    start_anchor(NS, NODE, "true", "anchor.pid")
    start_glusterd()
    start_sshd()
    write_os()
    install_provider()
    init_cluster(builtin_gluster)


def make_node_network(namespace, veth, address):
    """A node's network namespace: a veth to the shared bridge, its address,
    a bridge br0 for instance NICs, and /etc/hosts naming everything."""
    sh("ip", "netns", "add", namespace)
    sh("ip", "link", "add", f"{veth}o", "type", "veth", "peer", "name", f"{veth}i")
    sh("ip", "link", "set", f"{veth}i", "netns", namespace)
    sh("ip", "link", "set", f"{veth}o", "master", BRIDGE, "up")
    for command in (["link", "set", "lo", "up"], ["addr", "add", f"{address}/24", "dev", f"{veth}i"],
                    ["link", "set", f"{veth}i", "up"], ["link", "add", "br0", "type", "bridge"],
                    ["link", "set", "br0", "up"]):
        sh("ip", "-n", namespace, *command)
    os.makedirs(f"/etc/netns/{namespace}", exist_ok=True)
    for path in (f"/etc/netns/{namespace}/hosts", os.path.join(STATE, "hosts")):
        with open(path, "w") as handle:
            handle.write(HOSTS)


def enter_root():
    """Shell commands that make a fresh mount namespace's root the
    platform's root (nothing for this machine's own): its own proc, this
    network namespace's sysfs, this machine's /dev (fuse, kvm, loop devices),
    a tmpfs /run, STATE at the same path and the e2e's /etc/hosts."""
    root = PLATFORM.root
    if not root:
        return "true"
    return " && ".join([
        f"mount --rbind {root} {root}", f"mount -t proc proc {root}/proc",
        f"mount -t sysfs sysfs {root}/sys", f"mount --rbind /dev {root}/dev",
        f"mount -t tmpfs tmpfs {root}/run", f"mkdir -p {root}{STATE} {root}/run/lock",
        f"mount --bind {STATE} {root}{STATE}", f"mount --bind {STATE}/hosts {root}/etc/hosts",
        f"cd {root}", "mkdir -p .e2e-oldroot", "pivot_root . .e2e-oldroot", "cd /",
        "umount -l /.e2e-oldroot"])


def start_anchor(namespace, hostname, setup, pidfile):
    """A sleeping process holding a node's namespaces open (in the
    platform's root); its pid goes to pidfile."""
    anchor = subprocess.Popen(["ip", "netns", "exec", namespace, "unshare", "--uts", "--mount",
                               "--propagation", "private", "--", "sh", "-c",
                               f"hostname {hostname} && {enter_root()} && {setup} && exec sleep infinity"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.1)
        for candidate in [str(anchor.pid)] + sh("pgrep", "-P", str(anchor.pid), check=False).stdout.split():
            if open(f"/proc/{candidate}/comm").read().strip() == "sleep":
                with open(os.path.join(STATE, pidfile), "w") as handle:
                    handle.write(candidate)
                return int(candidate)
    raise RuntimeError(f"the namespace anchor of {namespace} did not start")


def noded2_pid():
    return int(inside2("cat", "/run/ganeti/ganeti-noded.pid").stdout)


def add_node2(join_hook=False):
    """Node 2: its own network, UTS and mount namespaces, with private
    /var/lib/ganeti, /var/log/ganeti, /run, /root/.ssh and /etc/ssh.
    join_hook: node 2 also runs glusterd, and the package's node-add hook is
    enabled on the master, which is to add node 2's brick to gv0."""
    make_node_network(NS2, "gnte2e2", ADDRESS2)
    private = {"lib": "/var/lib/ganeti", "log": "/var/log/ganeti", "root-ssh": "/root/.ssh",
               "etc-ssh": "/etc/ssh"}
    for name, original in private.items():
        target = os.path.join(NODE2_STATE, name)
        if name in ("root-ssh", "etc-ssh"):
            shutil.copytree(host(original), target, symlinks=True)  # node 1's key opens node 2
        else:
            os.makedirs(target)
            info = os.stat(host(original))
            os.chown(target, info.st_uid, info.st_gid)
            os.chmod(target, info.st_mode & 0o7777)
    extstorage = os.path.join(NODE2_STATE, "log", "extstorage")
    os.makedirs(extstorage)
    info = os.stat(host("/var/log/ganeti/extstorage"))
    os.chown(extstorage, info.st_uid, info.st_gid)
    os.chmod(extstorage, 0o750)
    binds = " && ".join(["mount -t tmpfs tmpfs /run", "mkdir -p /run/sshd /run/lock"] + [
        f"mount --bind {NODE2_STATE}/{name} {original}" for name, original in private.items()])
    start_anchor(NS2, NODE2, binds, "anchor2.pid")
    inside2("/usr/sbin/sshd", "-o", "PidFile=/run/sshd-e2e.pid", "-o", f"ListenAddress={ADDRESS2}")
    if join_hook:
        start_glusterd2()
        enable_join_hook()
    return inside("gnt-node", "add", "--no-ssh-key-check", NODE2)


def start_glusterd2():
    """glusterd on node 2, with no volume: the pool's next server."""
    os.makedirs(JOIN_MOUNT, mode=0o700)
    _start_glusterd(anchor2_pid(), os.path.join(NODE2_STATE, "gluster"),
                    [f"mount -t tmpfs tmpfs {JOIN_MOUNT}"])


def enable_join_hook():
    """As README says: link the hook, set the brick directory. glusterd of
    node 1 lives in its own mount namespace, so its CLI socket is named."""
    os.makedirs(os.path.dirname(host(HOOK_LINK)), exist_ok=True)
    os.symlink("/usr/share/ganeti-extstorage-gluster/hooks/ganeti-gluster-join", host(HOOK_LINK))
    with open(host(PROVIDER_CONFIG), "a") as handle:
        handle.write(f"GLUSTER_JOIN_BRICK={JOIN_BRICK}\n"
                     f"GLUSTER_GLUSTERD_SOCKET=/proc/{glusterd_pid()}/root/run/glusterd.socket\n")


def _start_glusterd(anchor, state, extra_mounts=()):
    """glusterd in a node's namespaces, in a mount namespace of its own with
    private /var/lib/glusterd, logs and /run (its CLI socket is
    /run/glusterd.socket); returns once it answers."""
    for name in ("lib", "log", "run"):
        os.makedirs(os.path.join(state, name), mode=0o700)
    shutil.copytree(host("/var/lib/glusterd/groups"), os.path.join(state, "lib", "groups"))
    binds = " && ".join(["mount -t tmpfs tmpfs /run", "mkdir -p /run/gluster", *extra_mounts] + [
        f"mount --bind {state}/{name} {target}" for name, target in
        (("lib", "/var/lib/glusterd"), ("log", "/var/log/glusterfs"), ("run", "/run/gluster"))])
    pidfile = os.path.join(state, "glusterd.pid")
    sh("nsenter", "-t", str(anchor), "-n", "-u", "-m", "unshare", "--mount", "--propagation",
       "private", "--", "sh", "-c", f"{binds} && exec /usr/sbin/glusterd -p {pidfile}")
    deadline = time.monotonic() + 30
    while not (os.path.exists(pidfile) and sh(
            "nsenter", "-t", open(pidfile).read().strip(), "-n", "-m", "gluster", "--mode=script",
            "pool", "list", check=False).returncode == 0):
        if time.monotonic() > deadline:
            raise RuntimeError(f"glusterd ({state}) did not answer within 30 s")
        time.sleep(0.3)


KVM_UTILS = "/usr/share/ganeti/3.1/ganeti/hypervisor/hv_kvm/kvm_utils.py"


def patch_ganeti_kvm_utils(on_node=None):
    """A node's Ganeti 3.1 (node 1's unless on_node is inside2) with
    docs/ganeti-3.1-kvm-gluster-userspace.patch: the patched kvm_utils.py
    bind-mounted over the installed one in the node's mount namespace (the
    cached root is left alone), then noded restarted so that it imports it."""
    on_node = on_node or inside
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    target = os.path.join(STATE, "ganeti-patched", "lib", "hypervisor", "hv_kvm")
    if not os.path.exists(os.path.join(target, "kvm_utils.py")):
        os.makedirs(target)
        shutil.copy(host(KVM_UTILS), target)
        sh("patch", "-p1", "--quiet", "-d", os.path.join(STATE, "ganeti-patched"), "-i",
           os.path.join(root, "docs", "ganeti-3.1-kvm-gluster-userspace.patch"))
    on_node("mount", "--bind", os.path.join(target, "kvm_utils.py"), KVM_UTILS)
    on_node("/usr/lib/ganeti/daemon-util", "stop", "ganeti-noded")
    on_node("/usr/lib/ganeti/daemon-util", "start", "ganeti-noded")


def start_glusterd():
    os.makedirs(os.path.join(GLUSTER_STATE, "bricks"), mode=0o700)
    _start_glusterd(anchor_pid(), GLUSTER_STATE)
    bricks = {"gv0": ["gv0"], "gv1": ["gv1"], SPREAD_VOLUME: [f"{SPREAD_VOLUME}a", f"{SPREAD_VOLUME}b"]}
    for volume, names in bricks.items():
        gluster("volume", "create", volume, *(f"{ADDRESS}:{GLUSTER_STATE}/bricks/{n}" for n in names), "force")
        gluster("volume", "set", volume, "performance.strict-o-direct", "on")
        if volume == SPREAD_VOLUME:  # small shards, so that one small disk spreads over both bricks
            gluster("volume", "set", volume, "features.shard", "on")
            gluster("volume", "set", volume, "features.shard-block-size", f"{SPREAD_SHARD >> 20}MB")
        gluster("volume", "start", volume)


def start_sshd():
    inside("mkdir", "-p", "/run/sshd")
    if not os.path.exists(host("/etc/ssh/ssh_host_ed25519_key")):
        inside("ssh-keygen", "-A")
    inside("/usr/sbin/sshd", "-o", f"PidFile={STATE}/sshd.pid", "-o", f"ListenAddress={ADDRESS}")


def write_os():
    os_dir = host(OS_DIR)
    os.makedirs(os_dir, exist_ok=True)
    with open(os.path.join(os_dir, "ganeti_api_version"), "w") as handle:
        handle.write("20\n")
    open(os.path.join(os_dir, "parameters.list"), "w").close()
    # export writes the disk to stdout, as an OS definition's export must
    # (what gnt-backup export stores is what it reads from the snapshot)
    bodies = {"export": 'exec dd if="$EXPORT_DEVICE" bs=1M status=none\n'}
    for script in ("create", "export", "import", "rename", "verify"):
        path = os.path.join(os_dir, script)
        with open(path, "w") as handle:
            handle.write("#!/bin/sh\n" + bodies.get(script, "exit 0\n"))
        os.chmod(path, 0o755)


def install_provider():
    """The Debian package, as an operator installs it: the same .deb on
    every platform, installed on the node (its dependencies are there already,
    so nothing is fetched; nor its recommended logrotate)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    deb = sh(os.path.join(root, "packaging", "build-deb")).stdout.strip().splitlines()[-1]
    shutil.copy(os.path.join(root, deb), STATE)
    inside("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "--no-install-recommends",
           os.path.join(STATE, os.path.basename(deb)))
    open(os.path.join(STATE, "installed-provider"), "w").close()
    fd = os.open(host(PROVIDER_CONFIG), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"GLUSTER_SERVERS={ADDRESS}\nGLUSTER_VOLUME=gv0\nGLUSTER_POOL_SECOND_VOLUME=gv1\n"
                     f"GLUSTER_POOL_SPREAD_VOLUME={SPREAD_VOLUME}\n")


def init_cluster(builtin_gluster=False):
    hypervisors = "fake,kvm" if kvm_available() else "fake"
    # The guests boot from their disk: no kernel (gnt-cluster verify checks
    # the default /boot/vmlinuz-3-kvmU exists).
    hvparams = ["--hypervisor-parameters=kvm:kernel_path=,initrd_path="] if kvm_available() else []
    templates = ["--enabled-disk-templates=ext"]
    if builtin_gluster:
        with open(host(FILE_STORAGE_PATHS), "w") as handle:  # Ganeti refuses a storage dir not listed
            handle.write("/var/run/ganeti/gluster\n")
        templates = ["--enabled-disk-templates=ext,gluster",
                     f"--disk-parameters=gluster:host={ADDRESS},port=24007,volume=gv1"]
    inside("gnt-cluster", "init", f"--enabled-hypervisors={hypervisors}", *hvparams, *templates,
           "--no-etc-hosts", "--master-netdev=gnte2e1i", "--nic-parameters=mode=bridged,link=br0",
           "--ipolicy-bounds-specs=min:cpu-count=1,disk-count=1,disk-size=1,memory-size=32,"
           "nic-count=0,spindle-use=1/max:cpu-count=8,disk-count=16,disk-size=1048576,"
           "memory-size=65536,nic-count=8,spindle-use=12",
           "--ipolicy-std-specs=cpu-count=1,disk-count=1,disk-size=256,memory-size=128,"
           "nic-count=1,spindle-use=1", CLUSTER)


def kvm_available():
    return os.path.exists("/dev/kvm") and os.path.exists(host("/usr/bin/qemu-system-x86_64"))


def save_host_files():
    for path in map(host, SAVED):
        target = os.path.join(STATE, "saved", path.strip("/").replace("/", "__"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(path):
            shutil.copytree(path, target, symlinks=True)
        elif os.path.lexists(path):
            shutil.copy2(path, target, follow_symlinks=False)


def restore_host_files():
    for path in map(host, SAVED):
        saved = os.path.join(STATE, "saved", path.strip("/").replace("/", "__"))
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
        if os.path.isdir(saved):
            shutil.copytree(saved, path, symlinks=True)
        elif os.path.lexists(saved):
            shutil.copy2(saved, path, follow_symlinks=False)


def _kill_pidfile(path):
    try:
        pid = int(open(path).read())
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def down():
    """Removes the cluster, from whatever state a run left."""
    if anchor_pid():
        inside("gnt-node", "remove", NODE2, check=False, timeout=120)
        inside("gnt-cluster", "destroy", "--yes-do-it", check=False, timeout=120)
        # The provider's mounts live in the node's mount namespace: unmount
        # them there, which also ends their FUSE client processes.
        for run_inside in (inside, inside2) if anchor2_pid() else (inside,):
            for line in run_inside("findmnt", "-rn", "-t", "fuse.glusterfs", "-o", "TARGET",
                                   check=False).stdout.split():
                if line.startswith(MOUNT_BASE + "/"):
                    run_inside("umount", "-l", line, check=False)
        run = f"/proc/{anchor_pid()}/root/run"
        for daemon in ("noded", "masterd", "confd", "rapi", "luxid", "wconfd", "kvmd", "metad", "mond"):
            _kill_pidfile(f"{run}/ganeti/ganeti-{daemon}.pid")
        _kill_pidfile(os.path.join(STATE, "sshd.pid"))
    # Stale pid files make the next daemon-util start-all refuse to start
    # (the debian13 nodes' /run is a tmpfs that goes with them).
    if not PLATFORM.root:
        shutil.rmtree("/run/ganeti", ignore_errors=True)
    # FUSE clients of the node's mounts outlive a lazy unmount while their
    # server is gone; they are ours: they name the node's address.
    for pid in os.listdir("/proc"):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except (OSError, ValueError):
            continue
        if argv[0].endswith(b"glusterfs") and f"--volfile-server={ADDRESS}".encode() in argv:
            os.kill(int(pid), signal.SIGKILL)
    for root, _, files in os.walk(GLUSTER_STATE):
        for name in files:
            if name.endswith(".pid"):
                _kill_pidfile(os.path.join(root, name))
    # loop devices and mounts the provider made inside the node's namespaces
    for line in sh("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").stdout.splitlines():
        name, _, backing = line.strip().partition(" ")
        backing = backing.strip()
        # Once noded's mount namespace is gone, the kernel names the backing
        # file from the volume's root: /ganeti/NAME (the provider's dir).
        if MOUNT_BASE + "/" in backing or GLUSTER_STATE in backing or backing.startswith("/ganeti/"):
            sh("losetup", "-d", name, check=False)
    # Everything still running in the nodes' network namespaces is ours.
    for namespace in (NS2, NS):
        for pid in sh("ip", "netns", "pids", namespace, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
    for anchor in (anchor_pid(), anchor2_pid()):
        if anchor:
            os.kill(anchor, signal.SIGKILL)
    for namespace in (NS, NS2):
        sh("ip", "netns", "delete", namespace, check=False)
        shutil.rmtree(f"/etc/netns/{namespace}", ignore_errors=True)
    for link in ("gnte2e1o", "gnte2e2o", BRIDGE):
        sh("ip", "link", "delete", link, check=False)
    if os.path.exists(os.path.join(STATE, "installed-provider")):
        chroot = ["chroot", PLATFORM.root] if PLATFORM.root else []
        sh(*chroot, "apt-get", "purge", "-y", "-qq", "ganeti-extstorage-gluster", check=False,
           env={"DEBIAN_FRONTEND": "noninteractive", "PATH": CLEAN_PATH})
    if os.path.isdir(os.path.join(STATE, "saved")):
        restore_host_files()
    shutil.rmtree(host(OS_DIR), ignore_errors=True)
    shutil.rmtree(STATE, ignore_errors=True)
