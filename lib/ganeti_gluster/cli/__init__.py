"""ganeti-gluster: the operator's tool for the volumes behind Ganeti's gluster disks.

Exit codes: 0 fine, 1 warnings found, 2 errors found, 3 could not do it
(bad arguments, server unreachable, ...). Data goes to stdout (--json for
machines); diagnostics go to stderr.

One module per thing acted on: disks (list, orphans, show, release), volume
(check, tune, status), cluster (join, fence, unfence). This one holds the command line, the
context every command gets, and the output helpers they share.
"""

import argparse
import contextlib
import json
import os
import sys

from .. import config, diag, fuse_worker, health, servers
from ..errors import ProviderError
from ..mount import VolumeMount
from ..runner import SAFE_PATH, Runner
from ..unmount_timer import start_waiting

EXIT_OK, EXIT_WARNING, EXIT_ERROR, EXIT_FAILED = 0, 1, 2, 3
SEVERITY_EXIT = {health.OK: EXIT_OK, health.INFO: EXIT_OK, health.WARNING: EXIT_WARNING,
                 health.ERROR: EXIT_ERROR}


class Context:
    """The node's settings, with --volume/--servers/--pool applied, and a runner."""

    def __init__(self, args, runner):
        params = {k: v for k, v in (("volume", getattr(args, "volume", None)),
                                    ("servers", args.servers), ("pool", args.pool)) if v}
        self.settings = config.load(params, os.environ)
        self.runner = runner
        self.volume = self.settings.require("volume")
        self.servers = self.settings.require("servers")

    def facts(self):
        server = self.reachable_server()
        return health.VolumeFacts(self.runner, server, self.settings.port, self.volume,
                                  self.settings.command_timeout)

    def reachable_server(self):
        return servers.first_reachable(self.servers, self.settings.port)

    def space(self, facts):
        """(free, total) through a mount when the volume is started, else None."""
        return self.mount().space() if facts.started else None

    def mount(self):
        return VolumeMount(self.settings, self.runner, self.servers[0], self.settings.port,
                           self.volume)

    @contextlib.contextmanager
    def mounted(self):
        """The volume mounted and held for a with-block; its mount point."""
        mount = self.mount()
        path = mount.acquire()
        try:
            yield path
        finally:
            mount.release(unmount_if_unused=True)


def print_json(data):
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def table(rows, headers):
    """Left-aligned columns, as `gnt-*` commands print them."""
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    lines = [headers] + rows
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in lines) + "\n"


def human_size(count):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024


# -- the command line ----------------------------------------------------------------

def parser():
    from . import cluster, disks, volume

    top = argparse.ArgumentParser(prog="ganeti-gluster", description=__doc__.split("\n\n")[0],
                                  epilog="Exit codes: 0 fine, 1 warnings, 2 errors, 3 could not do it.")
    top.add_argument("--servers", help="servers to ask (default: GLUSTER_SERVERS of the node)")
    top.add_argument("--pool", help="take volume and servers from this named pool")
    top.add_argument("--debug", action="store_true", help="log every step on stderr")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, function, help_text, volume="optional", json_output=True):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if volume == "optional":
            sub.add_argument("volume", nargs="?", help="the volume (default: GLUSTER_VOLUME)")
        elif volume == "required":
            sub.add_argument("volume", help="the volume")
        if json_output:
            sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(function=function)
        return sub

    check = command("check", volume.cmd_check, "preflight a volume for VM images; exit code by worst finding")
    check.add_argument("-v", "--verbose", action="store_true", help="show passing checks too")
    tune = command("tune", volume.cmd_tune, "show the option changes check recommends; --apply makes them",
                   volume="required")
    tune.add_argument("--apply", action="store_true", help="make the changes (on a GlusterFS server)")
    command("list", disks.cmd_list, "every provider disk on the volume")
    orphans = command("orphans", disks.cmd_orphans, "disks no Ganeti instance owns any more, and "
                      "leftovers (.NAME.partial) of interrupted creates and snapshots")
    orphans.add_argument("--instances", metavar="FILE",
                         help="instance names, one per line ('-': stdin); default: gnt-instance list")
    orphans.add_argument("--delete", metavar="DISK", action="append", default=[],
                         help="remove this orphan, or this .NAME.partial leftover once 60 s old "
                         "(repeat per disk; nothing else is removed)")
    status = command("status", volume.cmd_status, "volume health and space at a glance")
    status.add_argument("--prometheus", metavar="FILE", help="also write a node_exporter textfile")
    join = command("join", cluster.cmd_join, "add a new node's storage: peer probe, add-brick, rebalance "
                   "(dry run unless --yes)")
    join.add_argument("--brick", metavar="HOST:/PATH", action="append", required=True,
                      help="a new brick; give as many as the replica count, or a multiple")
    join.add_argument("--yes", action="store_true", help="make the changes")
    join.add_argument("--force", action="store_true", help="pass force to add-brick")
    join.add_argument("--timeout", type=float, default=600, help="bound on each wait (s)")
    join.add_argument("--queue", metavar="FILE", help="collect bricks here until they fill whole "
                      "replica sets (one new node at a time, as the node-add hook does)")
    join.add_argument("--rebalance", action="store_true",
                      help="rebalance even if the volume holds disk images (as GLUSTER_JOIN_REBALANCE=yes)")
    show = command("show", disks.cmd_show, "a disk's gluster URI, QEMU and libvirt forms", volume=None)
    show.add_argument("disk", help="the disk (VOL_NAME)")
    show.add_argument("--volume", help="the volume (default: GLUSTER_VOLUME)")
    release = command("release", disks.cmd_release, "clear another node's open record of a disk "
                      "(asks on a terminal; --yes otherwise)", volume=None, json_output=False)
    release.add_argument("disk", help="the disk (VOL_NAME)")
    release.add_argument("--node", help="the holder whose record to clear (needed when several hold it)")
    release.add_argument("--yes", action="store_true", help="do not ask")
    release.add_argument("--volume", help="the volume (default: GLUSTER_VOLUME)")
    fence = command("fence", cluster.cmd_fence, "cut a node off the volume (auth.reject) and verify that "
                    "no brick serves it any more; run on a GlusterFS server", volume=None, json_output=False)
    fence.add_argument("node", help="the Ganeti node")
    fence.add_argument("--address", help="the address its clients connect from (default: from its "
                       "open records on the volume)")
    fence.add_argument("--force", action="store_true",
                       help="fence even this node's own address or a brick host's")
    fence.add_argument("--timeout", type=float, default=30, help="bound on the verification (s)")
    fence.add_argument("--volume", help="the volume (default: GLUSTER_VOLUME)")
    unfence = command("unfence", cluster.cmd_unfence, "let a fenced node's clients mount the volume again",
                      volume=None, json_output=False)
    unfence.add_argument("node", help="the Ganeti node")
    unfence.add_argument("--address", help="the address fenced (default: from its open records)")
    unfence.add_argument("--volume", help="the volume (default: GLUSTER_VOLUME)")
    return top


def main(argv=None, runner=None):
    args = parser().parse_args(argv)
    os.environ["PATH"] = SAFE_PATH
    diag.configure(f"ganeti-gluster {args.command}", args.debug)
    try:
        ctx = Context(args, runner or Runner())
        # Touches of the mount run in a worker, each within io_timeout: a hung
        # client fails the command with the reason instead of hanging it.
        fuse_worker.configure(ctx.settings.io_timeout)
        return args.function(ctx, args)
    except ProviderError as exc:
        diag.error(str(exc))
        return EXIT_FAILED
    except OSError as exc:
        diag.error(f"{exc.filename or ''}: {exc.strerror}" if exc.strerror else str(exc))
        return EXIT_FAILED
    finally:
        fuse_worker.configure(None)  # the worker ends with the command's work


def run():
    """The command's entry point: main(), then what outlives the command."""
    code = main()
    start_waiting()
    return code
