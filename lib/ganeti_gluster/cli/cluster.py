"""ganeti-gluster join, fence and unfence: GlusterFS cluster membership, a
new node's bricks, and Ganeti nodes cut off a volume."""

import os
import sys
import time

from .. import diag, fencing, gluster_cli, servers, validate
from ..errors import ProviderError
from . import EXIT_OK, imagedir


def _local_xml(ctx, args):
    return gluster_cli.query(ctx.runner, None, ctx.settings.command_timeout, args,
                             ctx.settings.glusterd_socket)


def _volume_info(ctx):
    info = _local_xml(ctx, ["volume", "info", ctx.volume]).find("volInfo/volumes/volume")
    if info is None:
        raise ProviderError(f"volume {ctx.volume} does not exist on this server")
    return info


def _bricks_in(info):
    """The volume's bricks as (host, path), as _brick gives them."""
    found = set()
    for name in (b.findtext("name") or "" for b in info.iter("brick")):
        host, _, path = name.partition(":")
        found.add((host.lower(), os.path.normpath(path)))
    return found


def cmd_join(ctx, args):
    bricks = [_brick(b) for b in args.brick]
    info = _volume_info(ctx)
    replica = int(info.findtext("replicaCount") or 1)
    if args.queue:
        bricks = _from_queue(args.queue, bricks, _bricks_in(info), replica, args.yes)
        if not bricks:
            return EXIT_OK
    if len(bricks) % replica:
        raise ProviderError(f"volume {ctx.volume} is replica {replica}: add bricks in groups of "
                            f"{replica}, not {len(bricks)}")
    peers = {p.findtext("hostname") for p in _local_xml(ctx, ["pool", "list"]).iter("peer")}
    new_hosts = sorted({host for host, _ in bricks} - peers)
    plan = [["peer", "probe", host] for host in new_hosts]
    brick_args = [f"{host}:{path}" for host, path in bricks]
    plan.append(["volume", "add-brick", ctx.volume, *(["replica", str(replica)] if replica > 1 else []),
                 *brick_args, *(["force"] if args.force else [])])
    skipped = _why_not_rebalance(ctx, args, info)
    rebalance = ["volume", "rebalance", ctx.volume, "start"]
    for step in plan + ([] if skipped else [rebalance]):
        sys.stdout.write("gluster " + " ".join(step) + "\n")
    if skipped:
        sys.stdout.write(f"rebalance skipped: {skipped}, run gluster volume rebalance {ctx.volume} "
                         "start when convenient\n")
    if not args.yes:
        sys.stdout.write("(dry run: --yes makes these changes; run it on a GlusterFS server)\n")
        return EXIT_OK
    try:
        for step in plan:
            gluster_cli.change(ctx.runner, ctx.settings.command_timeout, step, ctx.settings.glusterd_socket)
            if step[0] == "peer":
                _wait(ctx, f"peer {step[2]} to join the pool", args.timeout,
                      lambda host=step[2]: _peer_in_cluster(ctx, host))
        _check_added(ctx, bricks, args.queue)
    except ProviderError as exc:
        if args.queue:
            raise ProviderError(f"{exc}; the bricks stay queued in {args.queue}") from None
        raise
    # a disk may have been made meanwhile
    skipped = skipped or _why_not_rebalance(ctx, args, info)
    if skipped:
        sys.stdout.write(f"joined {len(bricks)} bricks to {ctx.volume}; rebalance skipped\n")
        return EXIT_OK
    gluster_cli.change(ctx.runner, ctx.settings.command_timeout, rebalance, ctx.settings.glusterd_socket)
    _wait(ctx, "the rebalance", args.timeout, lambda: _rebalance_done(ctx))
    sys.stdout.write(f"joined {len(bricks)} bricks to {ctx.volume}; rebalance completed\n")
    return EXIT_OK


def _check_added(ctx, bricks, queue):
    """After add-brick: the bricks really in the volume leave the queue;
    any that is not there is an error (and stays queued)."""
    present = _bricks_in(_volume_info(ctx))
    if queue:
        _write_queue(queue, [b for b in _read_queue(queue) if b not in present])
    missing = [f"{host}:{path}" for host, path in bricks if (host, path) not in present]
    if missing:
        raise ProviderError(f"add-brick succeeded but volume {ctx.volume} does not list "
                            f"{', '.join(missing)}")


def _why_not_rebalance(ctx, args, info):
    """None when join should rebalance, else the reason it must not. A
    rebalance migrates image files between bricks under running VMs: on a
    volume holding disks only when the node's configuration (or --rebalance)
    says so."""
    if args.rebalance or ctx.settings.join_rebalance:
        return None
    if info.findtext("statusStr") != "Started":
        return f"volume {ctx.volume} is not started"
    with ctx.mounted() as mount_path:
        if imagedir.holds_any_file(mount_path, ctx.settings.dir):
            return (f"volume {ctx.volume} holds disk images in {ctx.settings.dir}/ and a rebalance "
                    "migrates them under running VMs (GLUSTER_JOIN_REBALANCE=yes or --rebalance "
                    "allows it)")
    return None


# -- the queue of the node-add hook: bricks wait until they fill a replica set -----

def _read_queue(path):
    try:
        with open(path) as handle:
            return [_brick(line.strip()) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


def _write_queue(path, bricks):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        handle.write("".join(f"{host}:{brick}\n" for host, brick in bricks))
    os.replace(temporary, path)


def _from_queue(path, bricks, in_volume, replica, write):
    """Adds bricks to the queue file (when `write`), dropping those already in
    the volume; returns the queued bricks that fill whole replica sets, first
    come first. They stay queued until add-brick put them in the volume."""
    queued = _read_queue(path)
    queued += [b for b in bricks if b not in queued]
    for host, brick in queued:
        if (host, brick) in in_volume:
            sys.stdout.write(f"{host}:{brick} is in volume already: dropped from the queue\n")
    queued = [b for b in queued if b not in in_volume]
    if write:
        _write_queue(path, queued)
    usable = len(queued) - len(queued) % replica
    if not usable:
        sys.stdout.write(f"{'queued' if write else 'would queue'} {len(queued)} brick(s) in {path}; "
                         f"volume is replica {replica}: waiting for {replica - len(queued)} more\n")
    return queued[:usable]


def _peer_in_cluster(ctx, host):
    for peer in _local_xml(ctx, ["peer", "status"]).iter("peer"):
        if peer.findtext("hostname") == host:
            diag.debug(f"peer {host}: {peer.findtext('stateStr')}")
            return peer.findtext("connected") == "1" and peer.findtext("stateStr") == "Peer in Cluster"
    return False


def _brick(text):
    host, sep, path = text.partition(":")
    if not sep or not path.startswith("/"):
        raise ProviderError(f"a brick is HOST:/PATH, not {text!r}")
    return validate.host("--brick", host), os.path.normpath(validate.absolute_path("--brick", path))


def _rebalance_done(ctx):
    root = _local_xml(ctx, ["volume", "rebalance", ctx.volume, "status"])
    states = [n.findtext("statusStr") for n in root.iter("node")]
    failed = [s for s in states if s and s.lower() == "failed"]
    if failed:
        raise ProviderError(f"the rebalance of {ctx.volume} failed; see gluster volume rebalance "
                            f"{ctx.volume} status")
    return bool(states) and all(s and s.lower() == "completed" for s in states)


def _wait(ctx, what, timeout, done):
    """Waits for done() within timeout seconds, showing progress on a terminal."""
    deadline = time.monotonic() + timeout
    progress = diag.Progress(f"waiting for {what}", int(timeout))
    while not done():
        if time.monotonic() > deadline:
            progress.done()
            raise ProviderError(f"{what} did not finish within {timeout:g} s")
        progress.update(int(timeout - (deadline - time.monotonic())))
        time.sleep(1)
    progress.done()



# -- fence and unfence: a node cut off the volume by its address -----------------------

def _node_address(ctx, node, given, fenced=()):
    """The address `node`'s clients connect from: --address, else the one
    the open records on the volume give for it; else, for unfence (its
    records are gone once another node took its disks over), the one of
    the `fenced` addresses its name resolves to."""
    from .disks import disks_on_volume

    if given:
        if not servers.is_address(given):
            raise ProviderError(f"--address {given!r} is not an IP address")
        return given
    recorded = sorted({d["open_from"][node] for d in disks_on_volume(ctx)
                       if servers.is_address(d["open_from"].get(node) or "")})
    if not recorded and fenced:
        resolved = servers.addresses_of(ctx.runner, node, ctx.settings.command_timeout)
        recorded = sorted(set(resolved) & set(fenced))
    if len(recorded) == 1:
        return recorded[0]
    if not recorded:
        raise ProviderError(f"no open record on volume {ctx.volume} names {node} with an address"
                            f"{' and its name resolves to no fenced one' if fenced else ''}: "
                            "give it with --address")
    raise ProviderError(f"the open records on volume {ctx.volume} name {node} with several addresses "
                        f"({', '.join(recorded)}): give the one to use with --address")


def _volume(ctx):
    """(a server that answers, this node's address towards it, VolumeInfo)."""
    server, own = servers.first_reachable_from(ctx.servers, ctx.settings.port)
    info = gluster_cli.volume_info(ctx.runner, server, ctx.settings.port, ctx.volume,
                                   ctx.settings.command_timeout)
    if info is None:
        raise ProviderError(f"volume {ctx.volume} does not exist on {server}")
    return server, own, info


def _why_not_fence(ctx, address, own, info):
    """Why fencing `address` would cut off more than a Ganeti node, or None."""
    if address == own:
        return (f"{address} is the address this node connects to volume {ctx.volume} from: "
                "fencing it would cut this node's own clients off")
    hosts = {}
    for brick in info.bricks:
        hosts.setdefault(brick.rpartition(":")[0], brick)
    for host, brick in hosts.items():
        if address in servers.addresses_of(ctx.runner, host, ctx.settings.command_timeout):
            return (f"{address} hosts brick {brick} of volume {ctx.volume}: fencing it would cut that "
                    "server's own daemons (self-heal, rebalance) off the volume")
    return None


def _set_reject(ctx, entries):
    """auth.reject set to `entries`, or reset when there are none."""
    if entries:
        step = ["volume", "set", ctx.volume, fencing.REJECT_OPTION, ",".join(entries)]
    else:
        step = ["volume", "reset", ctx.volume, fencing.REJECT_OPTION]
    gluster_cli.change(ctx.runner, ctx.settings.command_timeout, step, ctx.settings.glusterd_socket)


def cmd_fence(ctx, args):
    node = validate.node("NODE", args.node)
    address = _node_address(ctx, node, args.address)
    server, own, info = _volume(ctx)
    refusal = _why_not_fence(ctx, address, own, info)
    if refusal and not args.force:
        raise ProviderError(f"not fencing {node}: {refusal} (--force does it anyway)")
    if refusal:
        diag.warn(f"fencing {node} although {refusal} (--force)")
    entries = fencing.reject_list(info.options)
    if address not in entries:
        _set_reject(ctx, entries + [address])
    started = time.monotonic()
    # What glusterd says now, not what we asked: auth.reject lists it ...
    entries = fencing.reject_list(_volume(ctx)[2].options)
    if address not in entries:
        raise ProviderError(f"NOT fenced: {fencing.REJECT_OPTION} of volume {ctx.volume} does not list "
                            f"{address} after setting it ({', '.join(entries) or 'empty'})")
    # ... and no brick still serves a client from it.
    deadline, last = started + args.timeout, None
    while True:
        try:
            clients = gluster_cli.volume_clients(ctx.runner, server, ctx.settings.port, ctx.volume,
                                                 ctx.settings.command_timeout)
            still = clients.bricks_of(address)
            if not still:
                break
            last = f"{', '.join(still)} still list(s) a client from {address}"
        except ProviderError as exc:
            last = f"cannot ask glusterd which clients are connected: {exc}"
        if time.monotonic() > deadline:
            raise ProviderError(f"NOT verified that {node} is fenced: {fencing.REJECT_OPTION} of volume "
                                f"{ctx.volume} lists {address}, but after {args.timeout:g} s {last}")
        time.sleep(0.5)
    sys.stdout.write(f"fenced {node} ({address}) off volume {ctx.volume}: {fencing.REJECT_OPTION} is "
                     f"{','.join(entries)}; verified after {time.monotonic() - started:.1f} s: none of the "
                     f"{clients.bricks_answering} online brick(s) lists a client from {address}\n")
    return EXIT_OK


def cmd_unfence(ctx, args):
    node = validate.node("NODE", args.node)
    entries = fencing.reject_list(_volume(ctx)[2].options)
    address = _node_address(ctx, node, args.address, entries)
    if address not in entries:
        sys.stdout.write(f"{node} ({address}) is not fenced: {fencing.REJECT_OPTION} of volume "
                         f"{ctx.volume} does not list it\n")
        return EXIT_OK
    rest = [e for e in entries if e != address]
    _set_reject(ctx, rest)
    now = fencing.reject_list(_volume(ctx)[2].options)
    if address in now:
        raise ProviderError(f"{fencing.REJECT_OPTION} of volume {ctx.volume} still lists {address}")
    sys.stdout.write(f"unfenced {node} ({address}) on volume {ctx.volume}: {fencing.REJECT_OPTION} is "
                     f"{','.join(now) if now else 'reset'}; its clients may mount the volume again\n")
    return EXIT_OK
