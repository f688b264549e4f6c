"""glusterd through the gluster CLI: questions to any server over TCP, and
changes (tune --apply, join) to the local glusterd over its socket.

`gluster --remote-host` always talks to port 24007: for servers on another
port these checks are skipped rather than asked of the wrong daemon.
"""

import xml.etree.ElementTree as ElementTree

from .errors import ProviderError

DEFAULT_PORT = 24007


class VolumeInfo:
    def __init__(self, element):
        self.name = element.findtext("name")
        self.status = element.findtext("statusStr")
        self.type = element.findtext("typeStr")
        self.replica_count = int(element.findtext("replicaCount") or 1)
        self.arbiter_count = int(element.findtext("arbiterCount") or 0)
        self.disperse_count = int(element.findtext("disperseCount") or 0)
        self.bricks = [b.findtext("name") for b in element.iter("brick")]
        self.options = {o.findtext("name"): o.findtext("value")
                        for o in element.iter("option")}

    @property
    def started(self):
        return self.status == "Started"


def _cli(host, socket):
    """The gluster CLI aimed at glusterd on `host` over TCP, or with host
    None at the local glusterd over its socket: the CLI's own unless `socket`
    names another (glusterd in a container or another mount namespace)."""
    if host:
        return ["gluster", f"--remote-host={host}", "--mode=script"]
    return ["gluster", *([f"--glusterd-sock={socket}"] if socket else []), "--mode=script"]


def change(runner, timeout, args, socket=""):
    """A command that changes the pool or a volume: only the local glusterd
    takes those (it refuses them over --remote-host)."""
    return runner.run(_cli(None, socket) + list(args), timeout=timeout)


def query(runner, host, timeout, args, socket=""):
    """The XML answer of a gluster CLI command run against `host` (None: the
    local glusterd)."""
    command = _cli(host, socket) + [f"--timeout={max(1, int(timeout))}"] + args + ["--xml"]
    result = runner.run(command, timeout=timeout + 5, check=False)
    try:
        root = ElementTree.fromstring(result.stdout)
    except ElementTree.ParseError:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ProviderError(f"gluster CLI could not ask {host or 'the local glusterd'}: "
                            f"{detail[-1] if detail else 'no answer'}") from None
    return root


def volume_info(runner, host, port, volume, timeout):
    """VolumeInfo, or None if the volume does not exist."""
    if port != DEFAULT_PORT:
        raise ProviderError(f"cannot query glusterd on port {port}: the gluster CLI only "
                            f"talks to port {DEFAULT_PORT}")
    root = query(runner, host, timeout, ["volume", "info", volume])
    # 'volume info nosuch --xml' exits 0: the answer is in opRet.
    if root.findtext("opRet") != "0":
        error = root.findtext("opErrstr") or ""
        if "does not exist" in error:
            return None
        raise ProviderError(f"gluster volume info {volume} on {host} failed: {error}")
    element = root.find("volInfo/volumes/volume")
    return VolumeInfo(element) if element is not None else None


def volume_state(runner, host, port, volume, timeout):
    """'started', 'stopped', 'missing' or 'unknown' (could not ask)."""
    try:
        info = volume_info(runner, host, port, volume, timeout)
    except ProviderError:
        return "unknown"
    if info is None:
        return "missing"
    return "started" if info.started else "stopped"


class VolumeClients:
    """Who is connected to a volume's bricks, as glusterd says."""

    def __init__(self, addresses, bricks_answering):
        self.addresses = addresses              # {client address: [bricks it is connected to]}
        self.bricks_answering = bricks_answering

    def bricks_of(self, address):
        return self.addresses.get(address, [])


def client_address(endpoint):
    """The address of a client endpoint as glusterd lists it: '10.0.0.5:49151'
    or '[fe80::1]:49151' (an IPv6 address with its port)."""
    host, _, _ = endpoint.rpartition(":")
    return host.strip("[]") or endpoint


def volume_clients(runner, host, port, volume, timeout):
    """VolumeClients of `volume` from `gluster volume status VOL clients`
    (GlusterFS 10 answers it over --remote-host). Raises ProviderError if
    glusterd cannot be asked or no brick of the volume answers."""
    if port != DEFAULT_PORT:
        raise ProviderError(f"cannot query glusterd on port {port}: the gluster CLI only "
                            f"talks to port {DEFAULT_PORT}")
    root = query(runner, host, timeout, ["volume", "status", volume, "clients"])
    if root.findtext("opRet") != "0":
        raise ProviderError(f"gluster volume status {volume} clients on {host} failed: "
                            f"{root.findtext('opErrstr') or 'no reason given'}")
    addresses, answering = {}, 0
    for node in root.iter("node"):
        if node.findtext("status") != "1":
            continue  # an offline brick has no clients, and says nothing of the others
        answering += 1
        brick = f"{node.findtext('hostname')}:{node.findtext('path')}"
        for client in node.iter("client"):
            address = client_address(client.findtext("hostname") or "")
            addresses.setdefault(address, []).append(brick)
    if not answering:
        raise ProviderError(f"no brick of volume {volume} is online according to {host}")
    return VolumeClients(addresses, answering)
