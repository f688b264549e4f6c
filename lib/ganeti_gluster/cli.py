"""ganeti-gluster: the operator's tool for the volumes behind Ganeti's gluster disks.

Exit codes: 0 fine, 1 warnings found, 2 errors found, 3 could not do it
(bad arguments, server unreachable, ...). Data goes to stdout (--json for
machines); diagnostics go to stderr.
"""

import argparse
import json
import os
import sys
import time

from . import config, diag, gluster_cli, health, images, loopdev, open_records, servers, validate
from .errors import ProviderError
from .location import Location
from .mount import VolumeMount
from .procfs import mount_entry
from .unmount_timer import start_waiting
from .runner import SAFE_PATH, Runner

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


def _print_json(data):
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def _table(rows, headers):
    """Left-aligned columns, as `gnt-*` commands print them."""
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    lines = [headers] + rows
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in lines) + "\n"


def _size(count):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024


# -- check and tune --------------------------------------------------------------

def cmd_check(ctx, args):
    facts = ctx.facts()
    found = health.findings(facts, ctx.settings.min_free_percent, ctx.space(facts))
    worst = health.worst(found)
    if args.json:
        _print_json({"volume": facts.name, "worst": worst, "findings": [f.as_dict() for f in found]})
    else:
        rows = [[f.severity.upper(), f.check, f.message + (f"\n{'':>11}fix: {f.fix}" if f.fix else "")]
                for f in found if args.verbose or f.severity != health.OK]
        sys.stdout.write(f"volume {facts.name} ({facts.type}, replica {facts.replica_count}): {worst}\n")
        for severity, check, message in rows:
            sys.stdout.write(f"  {severity:<8} {check}: {message}\n")
        hidden = sum(f.severity == health.OK for f in found)
        if hidden and not args.verbose:
            sys.stdout.write(f"  ({hidden} checks ok; -v shows them)\n")
    return SEVERITY_EXIT[worst]


def cmd_tune(ctx, args):
    facts = ctx.facts()
    todo = health.changes(facts)
    if args.json and not args.apply:
        _print_json([{"option": o, "current": c, "wanted": w} for o, c, w in todo])
        return EXIT_OK
    if not todo:
        sys.stdout.write(f"volume {facts.name} needs no changes\n")
        return EXIT_OK
    for option, current, wanted in todo:
        sys.stdout.write(f"gluster volume set {facts.name} {option} {wanted}    # now {current}\n")
    if not args.apply:
        sys.stdout.write("(dry run: --apply makes these changes; run it on a GlusterFS server)\n")
        return EXIT_OK
    for option, _, wanted in todo:
        gluster_cli.change(ctx.runner, ctx.settings.command_timeout,
                           ["volume", "set", facts.name, option, wanted], ctx.settings.glusterd_socket)
        diag.info(f"set {option} = {wanted}")
    return EXIT_OK


# -- disks on the volume ---------------------------------------------------------

def _disks(ctx):
    """One dict per disk image on the volume, snapshots listed with their disk."""
    mount = ctx.mount()
    path = mount.acquire()
    try:
        directory = os.path.join(path, ctx.settings.dir)
        names = sorted(n for n in os.listdir(directory) if not n.startswith(".")) \
            if os.path.isdir(directory) else []
        disks = {}
        for name in names:
            image = os.path.join(directory, name)
            info = images.stat_image(image)
            if info is None:
                continue
            metadata = images.get_metadata(image) or ""
            disks[name] = {
                "name": name, "size": info.st_size, "allocated": info.st_blocks * 512,
                "instance": metadata.split("+", 1)[1] if metadata.startswith("originstname+") else None,
                "metadata": metadata or None,
                "open": {node: mode for node, (mode, _) in open_records.read(image).items()},
                "device": loopdev.find(image, info), "snapshots": [],
            }
        for name, disk in disks.items():
            parent = name[:-len(".snap")] if name.endswith(".snap") else None
            if parent in disks:
                disks[parent]["snapshots"].append(name)
        return [disks[n] for n in sorted(disks)]
    finally:
        mount.release(unmount_if_unused=True)


def cmd_list(ctx, args):
    disks = _disks(ctx)
    if args.json:
        _print_json(disks)
        return EXIT_OK
    rows = [[d["name"], _size(d["size"]), _size(d["allocated"]), d["instance"] or "-",
             ",".join(f"{n}({m[0]})" for n, m in sorted(d["open"].items())) or "-",
             d["device"] or "-", ",".join(d["snapshots"]) or "-"] for d in disks]
    if rows:
        sys.stdout.write(_table(rows, ["Disk", "Size", "Allocated", "Instance", "Open(e/s)",
                                       "Device", "Snapshots"]))
    sys.stdout.write(f"{len(disks)} disks on volume {ctx.volume}\n")
    return EXIT_OK


def _instances(ctx, args):
    if args.instances == "-":
        return {line.strip() for line in sys.stdin if line.strip()}
    if args.instances:
        with open(args.instances) as handle:
            return {line.strip() for line in handle if line.strip()}
    result = ctx.runner.run(["gnt-instance", "list", "--no-headers", "-o", "name"],
                            timeout=ctx.settings.command_timeout)
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def cmd_orphans(ctx, args):
    owners = _instances(ctx, args)
    orphans = [d for d in _disks(ctx) if d["instance"] not in owners]
    unknown = set(args.delete) - {d["name"] for d in orphans}
    if unknown:
        raise ProviderError(f"not orphans (or not on {ctx.volume}), left alone: {', '.join(sorted(unknown))}")
    deleted = []
    for disk in orphans:
        if disk["name"] in args.delete:
            _delete(ctx, disk)
            deleted.append(disk["name"])
    if args.json:
        _print_json({"orphans": orphans, "deleted": deleted})
    else:
        rows = [[d["name"], _size(d["size"]), _size(d["allocated"]), d["instance"] or "(no metadata)",
                 "deleted" if d["name"] in deleted else ""] for d in orphans]
        if rows:
            sys.stdout.write(_table(rows, ["Disk", "Size", "Allocated", "Last instance", ""]))
        sys.stdout.write(f"{len(orphans)} orphaned disks of {_size(sum(d['size'] for d in orphans))}"
                         f"{f', {len(deleted)} deleted' if deleted else ''}\n")
    return EXIT_WARNING if len(orphans) > len(deleted) else EXIT_OK


def _delete(ctx, disk):
    from . import operations
    from .request import GANETI, Request

    if disk["open"]:
        raise ProviderError(f"{disk['name']} is open on {', '.join(disk['open'])}; left alone")
    request = Request(action="remove", dialect=GANETI, name=disk["name"], params={})
    operations.remove(request, ctx.settings, ctx.runner, [])


# -- status ----------------------------------------------------------------------

def _status(ctx):
    facts = ctx.facts()
    mounts = []
    base = ctx.settings.mount_base
    if os.path.isdir(base):
        mounts = [v for v in sorted(os.listdir(base)) if mount_entry(os.path.join(base, v))]
    disks = _disks(ctx) if facts.started else []
    free, total = ctx.space(facts) or (facts.size_free, facts.size_total)
    return {
        "volume": facts.name, "started": facts.started, "type": facts.type,
        "replica": facts.replica_count, "bricks_total": len(facts.bricks),
        "bricks_up": sum(bool(b.online) for b in facts.bricks),
        "heal_entries": facts.heal_entries, "split_brain_entries": facts.split_brain_entries,
        "bytes_total": total, "bytes_free": free,
        "disks": len(disks), "disks_attached_here": sum(bool(d["device"]) for d in disks),
        "mounts_here": mounts,
        "health": health.worst(health.findings(facts, ctx.settings.min_free_percent, (free, total))),
    }


PROMETHEUS = (
    ("volume_started", "1 if the volume is started", lambda s: int(s["started"])),
    ("bricks", "bricks of the volume", lambda s: s["bricks_total"]),
    ("bricks_up", "bricks online", lambda s: s["bricks_up"]),
    ("heal_entries", "entries waiting for self-heal", lambda s: s["heal_entries"]),
    ("split_brain_entries", "entries in split-brain", lambda s: s["split_brain_entries"]),
    ("bytes_total", "usable bytes", lambda s: s["bytes_total"]),
    ("bytes_free", "free usable bytes", lambda s: s["bytes_free"]),
    ("disks", "provider disk images on the volume", lambda s: s["disks"]),
    ("mounts", "1 if this node has the volume mounted", lambda s: int(s["volume"] in s["mounts_here"])),
)


def _write_prometheus(path, status):
    lines = []
    for name, help_text, value in PROMETHEUS:
        number = value(status)
        if number is None:
            continue
        lines += [f"# HELP ganeti_gluster_{name} {help_text}", f"# TYPE ganeti_gluster_{name} gauge",
                  f'ganeti_gluster_{name}{{volume="{status["volume"]}"}} {number}']
    temporary = f"{path}.{os.getpid()}.tmp"  # node_exporter must never read half a file
    with open(temporary, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(temporary, path)


def cmd_status(ctx, args):
    status = _status(ctx)
    if args.prometheus:
        _write_prometheus(args.prometheus, status)
    if args.json:
        _print_json(status)
    else:
        heal = "-" if status["heal_entries"] is None else status["heal_entries"]
        split = "-" if status["split_brain_entries"] is None else status["split_brain_entries"]
        sys.stdout.write(
            f"volume {status['volume']}: {'started' if status['started'] else 'STOPPED'}, "
            f"{status['type']} replica {status['replica']}, health {status['health']}\n"
            f"  bricks      {status['bricks_up']}/{status['bricks_total']} up\n"
            f"  heal        {heal} pending, {split} in split-brain\n"
            f"  space       {_size(status['bytes_free'])} free of {_size(status['bytes_total'])}\n"
            f"  disks       {status['disks']} ({status['disks_attached_here']} attached on this node)\n"
            f"  mounted on this node: {', '.join(status['mounts_here']) or 'none'}\n")
    return SEVERITY_EXIT[status["health"]]


# -- join --------------------------------------------------------------------------

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


# -- show --------------------------------------------------------------------------

def cmd_show(ctx, args):
    name = validate.disk_name("DISK", args.disk)
    location = Location(ctx.servers[0], ctx.settings.port, ctx.volume, ctx.settings.dir, name)
    port = ctx.settings.port
    servers = [{"type": "inet", "host": s, "port": str(port)} for s in ctx.servers]
    path = f"{ctx.settings.dir}/{name}"
    drive_servers = ",".join(f"file.server.{i}.type=inet,file.server.{i}.host={s},"
                             f"file.server.{i}.port={port}" for i, s in enumerate(ctx.servers))
    blockdev = json.dumps({"driver": "gluster", "volume": ctx.volume, "path": path,
                           "server": servers, "node-name": "disk0-file"}, separators=(",", ":"))
    hosts = "\n".join(f"    <host name='{s}' port='{port}'/>" for s in ctx.servers)
    shown = {
        "uri": location.uri,
        "qemu_drive": f"-drive file={location.uri},format=raw,if=none,id=disk0,cache=none,aio=threads",
        "qemu_drive_all_servers": (f"-drive driver=raw,file.driver=gluster,file.volume={ctx.volume},"
                                   f"file.path={path},{drive_servers},if=none,id=disk0,cache=none"),
        "qemu_blockdev": (f"-blockdev '{blockdev}' -blockdev "
                          "'{\"driver\":\"raw\",\"file\":\"disk0-file\",\"node-name\":\"disk0\"}'"),
        "libvirt_xml": (f"<disk type='network' device='disk'>\n"
                        f"  <driver name='qemu' type='raw' cache='none' io='native'/>\n"
                        f"  <source protocol='gluster' name='{ctx.volume}/{path}'>\n{hosts}\n  </source>\n"
                        f"  <target dev='vda' bus='virtio'/>\n</disk>"),
    }
    if args.json:
        _print_json(shown)
    else:
        for key, value in shown.items():
            sys.stdout.write(f"{key}:\n  " + value.replace("\n", "\n  ") + "\n")
    return EXIT_OK


# -- the command line ----------------------------------------------------------------

def parser():
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

    check = command("check", cmd_check, "preflight a volume for VM images; exit code by worst finding")
    check.add_argument("-v", "--verbose", action="store_true", help="show passing checks too")
    tune = command("tune", cmd_tune, "show the option changes check recommends; --apply makes them",
                   volume="required")
    tune.add_argument("--apply", action="store_true", help="make the changes (on a GlusterFS server)")
    command("list", cmd_list, "every provider disk on the volume")
    orphans = command("orphans", cmd_orphans, "disks no Ganeti instance owns any more")
    orphans.add_argument("--instances", metavar="FILE",
                         help="instance names, one per line ('-': stdin); default: gnt-instance list")
    orphans.add_argument("--delete", metavar="DISK", action="append", default=[],
                         help="remove this orphan (repeat per disk; nothing else is removed)")
    status = command("status", cmd_status, "volume health and space at a glance")
    status.add_argument("--prometheus", metavar="FILE", help="also write a node_exporter textfile")
    join = command("join", cmd_join, "add a new node's storage: peer probe, add-brick, rebalance "
                   "(dry run unless --yes)")
    join.add_argument("--brick", metavar="HOST:/PATH", action="append", required=True,
                      help="a new brick; give as many as the replica count, or a multiple")
    join.add_argument("--yes", action="store_true", help="make the changes")
    join.add_argument("--force", action="store_true", help="pass force to add-brick")
    join.add_argument("--timeout", type=float, default=600, help="bound on each wait (s)")
    join.add_argument("--queue", metavar="FILE", help="collect bricks here until they fill whole "
                      "replica sets (one new node at a time, as the node-add hook does)")
    show = command("show", cmd_show, "a disk's gluster URI, QEMU and libvirt forms", volume=None)
    show.add_argument("disk", help="the disk (VOL_NAME)")
    show.add_argument("--volume", help="the volume (default: GLUSTER_VOLUME)")
    return top


def main(argv=None, runner=None):
    args = parser().parse_args(argv)
    os.environ["PATH"] = SAFE_PATH
    diag.configure(f"ganeti-gluster {args.command}", args.debug)
    try:
        return args.function(Context(args, runner or Runner()), args)
    except ProviderError as exc:
        diag.error(str(exc))
        return EXIT_FAILED
    except OSError as exc:
        diag.error(f"{exc.filename or ''}: {exc.strerror}" if exc.strerror else str(exc))
        return EXIT_FAILED


def run():
    """The command's entry point: main(), then what outlives the command."""
    code = main()
    start_waiting()
    return code
