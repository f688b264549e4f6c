"""Exclusive opens that hold: is another node's open still live, and
cutting a node off a volume.

GlusterFS knows which clients are connected to each brick (`gluster volume
status VOL clients`, answered over --remote-host) and refuses clients whose
address the volume option auth.reject lists. Setting it drops their
connections at once; GlusterFS's FUSE client then shuts down and its mount
goes away, so a file it held open answers ENOTCONN to every later write
(tests/integration/test_exclusive.py proves it, writes in flight included).
A node is known by the address its clients connect from, which the open
record carries (open_records).
"""

from . import diag, gluster_cli, servers
from .errors import ProviderError

REJECT_OPTION = "auth.reject"
RESOLVE_TIMEOUT = 10.0


def holder_address(runner, node, record, timeout):
    """The address `node`'s clients connect from: its open record's, else
    what its name resolves to (older records name none); None if unknown."""
    if record.address:
        return record.address
    found = servers.addresses_of(runner, node, min(timeout, RESOLVE_TIMEOUT))
    return found[0] if len(found) == 1 else None


def cli_command(settings, volume, action, *words):
    """The ganeti-gluster command line that acts on `volume` as this disk's settings name it."""
    where = [f"--pool {settings.pool}"] if settings.pool else []
    tail = [] if settings.pool else [f"--volume {volume}"]
    return " ".join(["ganeti-gluster", *where, action, *words, *tail])


def take_over(disk_name, volume, conflicts, runner, settings, server, port, own_address):
    """Decides an open that other nodes' records stand against ({node:
    OpenRecord}): returns when every one of them is stale (their clients
    are gone from the volume), warning once; raises naming the holders and
    the way out otherwise, or when that cannot be proved."""
    holders = "; ".join(f"{n} ({r.describe()})" for n, r in sorted(conflicts.items()))
    first = sorted(conflicts)[0]
    way_out = (f"if {first} still runs it, cut it off with `{cli_command(settings, volume, 'fence', first)}`; "
               f"if the record is stale, clear it with "
               f"`{cli_command(settings, volume, 'release', disk_name, '--node', first)}`")
    refusal = f"disk {disk_name} is open on {holders}"
    if settings.strict_open:
        raise ProviderError(f"{refusal}; refusing to open it here too (GLUSTER_STRICT_OPEN=yes never "
                            f"takes over); {way_out}")
    addresses = {n: holder_address(runner, n, r, settings.command_timeout) for n, r in conflicts.items()}
    unknown = sorted(n for n, a in addresses.items() if a is None)
    if unknown:
        raise ProviderError(f"{refusal}; cannot tell whether {', '.join(unknown)} is still connected to "
                            f"volume {volume} (no address recorded, and the name does not resolve to one): "
                            f"refusing a second writer; {way_out}")
    try:
        if server is None:
            raise ProviderError(f"no GlusterFS server of the volume answers on port {port}")
        clients = gluster_cli.volume_clients(runner, server, port, volume, settings.command_timeout)
    except ProviderError as exc:
        raise ProviderError(f"{refusal}; cannot ask glusterd whether it is still connected ({exc}), so "
                            f"cannot prove it gone: refusing a second writer; {way_out}") from None
    live = []
    for node, address in sorted(addresses.items()):
        if address == own_address:
            live.append(f"{node} connects from {address} as this node does, so its clients cannot be "
                        "told from ours")
        elif clients.bricks_of(address):
            live.append(f"{node}'s client at {address} is connected to {len(clients.bricks_of(address))} "
                        f"brick(s) of volume {volume}")
    if live:
        raise ProviderError(f"{refusal}; {'; '.join(live)}: refusing a second writer; {way_out}")
    diag.warn(f"disk {disk_name} was open on {holders}, and no client of it is connected to volume "
              f"{volume} any more: taking it over")


def reject_list(options):
    """The entries of a volume's auth.reject option (VolumeInfo.options)."""
    value = options.get(REJECT_OPTION) or ""
    return [entry.strip() for entry in value.split(",") if entry.strip()]
