"""ganeti-gluster join: GlusterFS cluster membership, a new node's bricks."""

import os
import sys
import time

from .. import diag, gluster_cli, validate
from ..errors import ProviderError
from . import EXIT_OK


def _local_xml(ctx, args):
    return gluster_cli.query(ctx.runner, None, ctx.settings.command_timeout, args,
                             ctx.settings.glusterd_socket)


def cmd_join(ctx, args):
    bricks = [_brick(b) for b in args.brick]
    info = _local_xml(ctx, ["volume", "info", ctx.volume]).find("volInfo/volumes/volume")
    if info is None:
        raise ProviderError(f"volume {ctx.volume} does not exist on this server")
    replica = int(info.findtext("replicaCount") or 1)
    if args.queue:
        bricks = _queued(args.queue, bricks, replica)
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
    plan.append(["volume", "rebalance", ctx.volume, "start"])
    for step in plan:
        sys.stdout.write("gluster " + " ".join(step) + "\n")
    if not args.yes:
        sys.stdout.write("(dry run: --yes makes these changes; run it on a GlusterFS server)\n")
        return EXIT_OK
    for step in plan:
        gluster_cli.change(ctx.runner, ctx.settings.command_timeout, step, ctx.settings.glusterd_socket)
        if step[0] == "peer":
            _wait(ctx, f"peer {step[2]} to join the pool", args.timeout,
                  lambda host=step[2]: _peer_in_cluster(ctx, host))
    _wait(ctx, "the rebalance", args.timeout, lambda: _rebalance_done(ctx))
    sys.stdout.write(f"joined {len(bricks)} bricks to {ctx.volume}; rebalance completed\n")
    return EXIT_OK


def _queued(path, bricks, replica):
    """Adds bricks to the queue file; returns all queued bricks once they fill
    whole replica sets (the queue is then emptied), else nothing."""
    try:
        with open(path) as handle:
            queued = [_brick(line.strip()) for line in handle if line.strip()]
    except FileNotFoundError:
        queued = []
    queued += [b for b in bricks if b not in queued]
    usable = len(queued) - len(queued) % replica
    remaining = queued[usable:]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        handle.write("".join(f"{host}:{brick}\n" for host, brick in remaining))
    os.replace(temporary, path)
    if not usable:
        sys.stdout.write(f"queued {len(queued)} brick(s) in {path}; volume is replica {replica}: "
                         f"waiting for {replica - len(queued)} more\n")
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
    return validate.host("--brick", host), validate.absolute_path("--brick", path)


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

