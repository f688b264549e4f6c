"""Is a volume fit for VM images? Facts from glusterd, findings with severities.

Used by `ganeti-gluster check/tune/status` and by the provider's `verify`.
The recommendations follow GlusterFS's own `virt` option group (or
`distributed-virt` for plain distribute volumes), plus what a VM disk needs
whatever the group says: strict-o-direct on and remote-dio off, so that an
O_DIRECT write is on the bricks before it is acknowledged.
"""

import re

from . import gluster_cli
from .errors import ProviderError

OK, INFO, WARNING, ERROR = "ok", "info", "warning", "error"
SEVERITY_ORDER = (OK, INFO, WARNING, ERROR)

# Where glusterfs-server installs its option groups (`gluster volume set V
# group virt` reads them there). A node with only the client has none.
GROUPS_DIR = "/var/lib/glusterd/groups"
# groups/virt and groups/distributed-virt as GlusterFS 10 and 11 ship them
# (identical in both): used where this node has no group file.
VIRT_GROUP = {
    "performance.quick-read": "off", "performance.read-ahead": "off",
    "performance.io-cache": "off", "performance.low-prio-threads": "32",
    "network.remote-dio": "disable", "performance.strict-o-direct": "on",
    "cluster.eager-lock": "enable", "cluster.quorum-type": "auto",
    "cluster.server-quorum-type": "server", "cluster.data-self-heal-algorithm": "full",
    "cluster.locking-scheme": "granular", "cluster.shd-max-threads": "8",
    "cluster.shd-wait-qlength": "10000", "features.shard": "on", "user.cifs": "off",
    "cluster.choose-local": "off", "client.event-threads": "4", "server.event-threads": "4",
    "performance.client-io-threads": "on", "network.ping-timeout": "20",
    "server.tcp-user-timeout": "20", "server.keepalive-time": "10",
    "server.keepalive-interval": "2", "server.keepalive-count": "5",
    "cluster.lookup-optimize": "off",
}
DISTRIBUTED_VIRT_GROUP = {
    "performance.quick-read": "off", "performance.read-ahead": "off",
    "performance.io-cache": "off", "performance.low-prio-threads": "32",
    "network.remote-dio": "enable", "features.shard": "on", "user.cifs": "off",
    "client.event-threads": "4", "server.event-threads": "4",
    "performance.client-io-threads": "on", "cluster.lookup-optimize": "off",
}
# What every VM image volume needs, over either group.
DATA_SAFETY = {"performance.strict-o-direct": "on", "network.remote-dio": "disable"}
# GlusterFS's defaults for the options we look at (volume info lists only
# options that were set, and `volume get` is not answered over --remote-host).
DEFAULTS = {
    "performance.strict-o-direct": "off", "network.remote-dio": "disable",
    "features.shard": "off", "network.ping-timeout": "42", "performance.quick-read": "on",
    "performance.read-ahead": "off", "performance.io-cache": "off",
    "performance.low-prio-threads": "16", "cluster.eager-lock": "on",
    "cluster.quorum-type": "auto", "cluster.server-quorum-type": "off",
    "cluster.data-self-heal-algorithm": "(null)", "cluster.locking-scheme": "full",
    "cluster.shd-max-threads": "1", "cluster.shd-wait-qlength": "1024", "user.cifs": "enable",
    "cluster.choose-local": "true", "client.event-threads": "2", "server.event-threads": "2",
    "performance.client-io-threads": "on", "server.tcp-user-timeout": "42",
    "server.keepalive-time": "20", "server.keepalive-interval": "2",
    "server.keepalive-count": "9", "cluster.lookup-optimize": "on",
}
_SYNONYMS = {"on": "on", "enable": "on", "true": "on", "yes": "on", "1": "on",
             "off": "off", "disable": "off", "false": "off", "no": "off", "0": "off"}


def same_value(a, b):
    return _SYNONYMS.get(str(a).lower(), str(a).lower()) == _SYNONYMS.get(str(b).lower(), str(b).lower())


_GROUP_LINE = re.compile(r"([a-z0-9][a-z0-9._-]*)=([^\s=]+)")
BUILT_IN_GROUPS = {"virt": VIRT_GROUP, "distributed-virt": DISTRIBUTED_VIRT_GROUP}


def option_group(name, directory=GROUPS_DIR):
    """(options, where they came from) of GlusterFS's option group `name`:
    the installed GlusterFS's own group file where this node has one, so a
    newer GlusterFS's set is the one compared; else the built-in copy."""
    path = f"{directory}/{name}"
    try:
        with open(path) as handle:
            text = handle.read(65536)
    except OSError:
        return BUILT_IN_GROUPS[name], f"the built-in {name} group (no {path} on this node)"
    options = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _GROUP_LINE.fullmatch(line)
        if not match:
            return BUILT_IN_GROUPS[name], f"the built-in {name} group ({path} is not a group file)"
        options[match.group(1)] = match.group(2)
    if not options:
        return BUILT_IN_GROUPS[name], f"the built-in {name} group ({path} is empty)"
    return options, path


class Finding:
    def __init__(self, severity, check, message, fix=None):
        self.severity = severity
        self.check = check
        self.message = message
        self.fix = fix

    def as_dict(self):
        return {"severity": self.severity, "check": self.check, "message": self.message,
                "fix": self.fix}


def worst(findings):
    return max((f.severity for f in findings), key=SEVERITY_ORDER.index, default=OK)


class Brick:
    def __init__(self, name, online=None, size_total=0, size_free=0, pid=None):
        self.name = name
        self.online = online
        self.size_total = size_total
        self.size_free = size_free
        self.pid = pid


class VolumeFacts:
    """What glusterd says about a volume: type, bricks, options, heals."""

    def __init__(self, runner, server, port, volume, timeout):
        info = gluster_cli.volume_info(runner, server, port, volume, timeout)
        if info is None:
            raise ProviderError(f"volume {volume} does not exist on {server}")
        self.server = server
        self.name = info.name
        self.status = info.status
        self.started = info.started
        self.type = info.type
        self.replica_count = info.replica_count
        self.arbiter_count = info.arbiter_count
        self.disperse_count = info.disperse_count
        self.set_options = info.options
        self.bricks = [Brick(name) for name in info.bricks]
        self.heal_entries = None
        self.split_brain_entries = None
        if self.started:
            self._read_status(runner, timeout)
            if self.replicated or self.disperse_count:
                self.heal_entries = self._heal_count(runner, timeout, [])
                if self.replicated:
                    self.split_brain_entries = self._heal_count(runner, timeout, ["split-brain"])

    @property
    def replicated(self):
        return self.replica_count > 1

    def option(self, name):
        return self.set_options.get(name, DEFAULTS.get(name))

    @property
    def group_name(self):
        return "virt" if self.replicated else "distributed-virt"

    @property
    def recommended_group(self):
        return option_group(self.group_name)[0]

    def recommended_options(self):
        return {**self.recommended_group, **DATA_SAFETY}

    @property
    def size_total(self):
        return self._usable(lambda b: b.size_total)

    @property
    def size_free(self):
        return self._usable(lambda b: b.size_free)

    def _usable(self, measure):
        """Bytes as clients see them: bricks of one replica set hold the same
        data, so count one brick per set (the smallest)."""
        group = max(1, self.replica_count if self.replicated else 1)
        sets = [self.bricks[i:i + group] for i in range(0, len(self.bricks), group)]
        return sum(min(measure(b) for b in brick_set) for brick_set in sets if brick_set)

    def _read_status(self, runner, timeout):
        root = gluster_cli.query(runner, self.server, timeout,
                                 ["volume", "status", self.name, "detail"])
        by_name = {b.name: b for b in self.bricks}
        for node in root.iter("node"):
            name = f"{node.findtext('hostname')}:{node.findtext('path')}"
            brick = by_name.get(name)
            if brick is None:  # self-heal daemon and the like
                continue
            brick.online = node.findtext("status") == "1"
            brick.size_total = int(node.findtext("sizeTotal") or 0)
            brick.size_free = int(node.findtext("sizeFree") or 0)
            brick.pid = node.findtext("pid")

    def _heal_count(self, runner, timeout, extra):
        try:
            root = gluster_cli.query(runner, self.server, timeout,
                                     ["volume", "heal", self.name, "info", *extra])
        except ProviderError:
            return None
        counts = [node.findtext("numberOfEntries") for node in root.iter("brick")]
        numbers = [int(c) for c in counts if c and c.isdigit()]
        return sum(numbers) if numbers else None


def findings(facts, min_free_percent=5.0, space=None):
    """Every check on the volume, each with a severity and, where one exists, a fix.
    `space` is (free, total) measured through a mount; else the bricks' figures."""
    name = facts.name
    result = []

    def add(severity, check, message, fix=None):
        result.append(Finding(severity, check, message, fix))

    if not facts.started:
        add(ERROR, "started", f"volume {name} is {facts.status}", f"gluster volume start {name}")
        return result
    add(OK, "started", f"volume {name} is started")

    offline = [b.name for b in facts.bricks if b.online is False]
    if offline:
        add(ERROR, "bricks", f"{len(offline)} of {len(facts.bricks)} bricks offline: {', '.join(offline)}",
            f"gluster volume start {name} force")
    else:
        add(OK, "bricks", f"all {len(facts.bricks)} bricks online")

    if facts.disperse_count:
        add(WARNING, "layout", f"{facts.type} volume: dispersed volumes are slow for VM images; "
            "use replica 3 or replica 3 with arbiter")
    elif facts.replica_count == 3:
        add(OK, "layout", f"replica 3{' arbiter 1' if facts.arbiter_count else ''}")
    elif facts.replica_count == 2:
        add(WARNING, "layout", "replica 2 without arbiter: split-brain is likely after a network "
            "partition; use replica 3 or add an arbiter")
    elif facts.replica_count == 1:
        add(WARNING, "layout", f"{facts.type} volume without replication: a brick failure loses disks")
    else:
        add(INFO, "layout", f"replica {facts.replica_count}")

    strict = facts.option("performance.strict-o-direct")
    if same_value(strict, "on"):
        add(OK, "strict-o-direct", "performance.strict-o-direct is on")
    else:
        add(ERROR, "strict-o-direct", "performance.strict-o-direct is off: O_DIRECT writes can be "
            "acknowledged and then lost when a brick fails",
            f"gluster volume set {name} performance.strict-o-direct on")
    remote_dio = facts.option("network.remote-dio")
    if same_value(remote_dio, "off"):
        add(OK, "remote-dio", "network.remote-dio is off")
    else:
        add(WARNING, "remote-dio", "network.remote-dio is on: the bricks ignore O_DIRECT",
            f"gluster volume set {name} network.remote-dio disable")

    if same_value(facts.option("features.shard"), "on"):
        add(OK, "sharding", "features.shard is on")
    else:
        why = "a heal copies whole disk images" if facts.replicated else \
            "a disk image lives on one brick and cannot outgrow it"
        add(WARNING, "sharding", f"features.shard is off: {why}",
            f"gluster volume set {name} features.shard on  (only while the volume holds no images)")
    timeout = facts.option("network.ping-timeout")
    if timeout and timeout.isdigit() and int(timeout) > 30:
        add(WARNING, "ping-timeout", f"network.ping-timeout is {timeout} s: VMs freeze that long "
            "when a server dies", f"gluster volume set {name} network.ping-timeout 20")
    else:
        add(OK, "ping-timeout", f"network.ping-timeout is {timeout} s")

    if facts.heal_entries:
        add(WARNING, "heal", f"{facts.heal_entries} entries waiting for heal",
            f"gluster volume heal {name}")
    elif facts.heal_entries == 0:
        add(OK, "heal", "no pending heals")
    if facts.split_brain_entries:
        add(ERROR, "split-brain", f"{facts.split_brain_entries} entries in split-brain",
            f"gluster volume heal {name} info split-brain")
    elif facts.split_brain_entries == 0:
        add(OK, "split-brain", "no split-brain entries")

    free, total = space or (facts.size_free, facts.size_total)
    if total:
        percent = 100.0 * free / total
        detail = f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB ({percent:.1f}%)"
        add(WARNING if percent < min_free_percent else OK, "space", detail)

    group, source = option_group(facts.group_name)
    add(OK, "option group", f"options compared with {source}")
    for option, wanted in sorted(group.items()):
        if option in DATA_SAFETY or option == "features.shard":
            continue  # reported above
        current = facts.option(option)
        if current is None or not same_value(current, wanted):
            add(WARNING, f"option {option}", f"{option} is {current or 'unset'}, the {facts.group_name} group "
                f"wants {wanted}", f"gluster volume set {name} {option} {wanted}")
    return result


def changes(facts):
    """(option, current, wanted) for every option tune would set."""
    result = []
    for option, wanted in sorted(facts.recommended_options().items()):
        current = facts.option(option)
        if current is None or not same_value(current, wanted):
            if option == "features.shard":
                continue  # changing sharding on a volume with data corrupts it
            result.append((option, current, wanted))
    return result
