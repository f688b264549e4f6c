"""ganeti-gluster list, orphans, show and release: the provider's disks on a volume.

Nothing the volume holds is followed: see imagedir.
"""

import json
import os
import stat
import sys

from .. import diag, images, loopdev, validate
from ..errors import ProviderError
from ..location import Location
from . import EXIT_OK, EXIT_WARNING, human_size, imagedir, print_json, table

# A .partial file written to this recently may be a create or snapshot
# still running (they write it until they rename it into place).
PARTIAL_MIN_AGE = 60


def scan(ctx):
    """(disks, .partial leftovers) on the volume, one dict each, snapshots
    listed with their disk; what is neither is named in a warning."""
    with ctx.mounted() as mount_path:
        found = imagedir.scan(mount_path, ctx.settings.dir)
    for path, what in found["skipped"]:
        diag.warn(f"{path} is {what}, not a disk image: skipped")
    disks = {}
    for name, image in found["images"].items():
        metadata = image["metadata"] or ""
        info = os.stat_result(image["stat"])
        disks[name] = {
            "name": name, "size": info.st_size, "allocated": image["blocks"] * 512,
            "instance": metadata.split("+", 1)[1] if metadata.startswith("originstname+") else None,
            "metadata": metadata or None, "open": image["open"], "open_from": image["open_from"],
            "device": loopdev.find(os.path.join(mount_path, ctx.settings.dir, name), info, None,
                                  mount_path, ctx.settings.node_name),
            "snapshots": [],
        }
    for name, disk in disks.items():
        parent = name[:-len(".snap")] if name.endswith(".snap") else None
        if parent in disks:
            disks[parent]["snapshots"].append(name)
    return [disks[n] for n in sorted(disks)], found["partials"]


def disks_on_volume(ctx):
    return scan(ctx)[0]


def cmd_list(ctx, args):
    disks = disks_on_volume(ctx)
    if args.json:
        print_json(disks)
        return EXIT_OK
    rows = [[d["name"], human_size(d["size"]), human_size(d["allocated"]), d["instance"] or "-",
             ",".join(f"{n}({m[0]})" for n, m in sorted(d["open"].items())) or "-",
             d["device"] or "-", ",".join(d["snapshots"]) or "-"] for d in disks]
    if rows:
        sys.stdout.write(table(rows, ["Disk", "Size", "Allocated", "Instance", "Open(e/s)",
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


def human_age(seconds):
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * length:
            return f"{seconds // length} {unit}"
    return f"{seconds} s"


def cmd_orphans(ctx, args):
    owners = _instances(ctx, args)
    disks, partials = scan(ctx)
    orphans = [d for d in disks if d["instance"] not in owners]
    deleted = _delete(ctx, list(dict.fromkeys(args.delete)), orphans, partials)
    stale = [p for p in partials if p["age_seconds"] >= PARTIAL_MIN_AGE and p["name"] not in deleted]
    if args.json:
        print_json({"orphans": orphans, "partial": partials, "deleted": deleted})
    else:
        _print_orphans(orphans, partials, deleted)
    left = [d for d in orphans if d["name"] not in deleted]
    return EXIT_WARNING if left or stale else EXIT_OK


def _print_orphans(orphans, partials, deleted):
    rows = [[d["name"], human_size(d["size"]), human_size(d["allocated"]), d["instance"] or "(no metadata)",
             "deleted" if d["name"] in deleted else ""] for d in orphans]
    if rows:
        sys.stdout.write(table(rows, ["Disk", "Size", "Allocated", "Last instance", ""]))
    gone = sum(d["name"] in deleted for d in orphans)
    sys.stdout.write(f"{len(orphans)} orphaned disks of {human_size(sum(d['size'] for d in orphans))}"
                     f"{f', {gone} deleted' if gone else ''}\n")
    if not partials:
        return
    rows = [[p["name"], human_size(p["size"]), human_size(p["allocated"]), human_age(p["age_seconds"]),
             "deleted" if p["name"] in deleted else ""] for p in partials]
    sys.stdout.write("\n" + table(rows, ["Leftover of an interrupted create or snapshot", "Size",
                                         "Allocated", "Age", ""]))
    gone = sum(p["name"] in deleted for p in partials)
    sys.stdout.write(f"{len(partials)} leftover .partial files of "
                     f"{human_size(sum(p['size'] for p in partials))}"
                     f"{f', {gone} deleted' if gone else ''}\n")


def _delete(ctx, names, orphans, partials):
    """Deletes the orphans and leftovers named, once all of them are known
    to be deletable; returns their names."""
    disks = {d["name"]: d for d in orphans}
    leftovers = {p["name"]: p for p in partials}
    unknown = [n for n in names if n not in disks and n not in leftovers]
    if unknown:
        raise ProviderError(f"not orphans or .partial leftovers (or not on {ctx.volume}), "
                            f"left alone: {', '.join(sorted(unknown))}")
    for name in names:
        if name in disks and disks[name]["open"]:
            raise ProviderError(f"{name} is open on {', '.join(disks[name]['open'])}; left alone")
        refusal = name in leftovers and imagedir.too_recent(name, leftovers[name]["age_seconds"],
                                                            PARTIAL_MIN_AGE)
        if refusal:
            raise ProviderError(refusal)
    for name in names:
        if name in leftovers:
            with ctx.mounted() as mount_path:  # looked at again as it is removed
                imagedir.remove_partial(mount_path, ctx.settings.dir, name, PARTIAL_MIN_AGE)
        else:
            _remove_disk(ctx, name)
    return names


def _remove_disk(ctx, name):
    """As the provider's remove script would (it refuses a disk attached here)."""
    from .. import operations
    from ..request import GANETI, Request

    request = Request(action="remove", dialect=GANETI, name=name, params={})
    operations.remove(request, ctx.settings, ctx.runner, [])


# -- show --------------------------------------------------------------------------

def cmd_show(ctx, args):
    name = validate.disk_name("DISK", args.disk)
    with ctx.mounted() as mount_path:
        mode = imagedir.look(mount_path, ctx.settings.dir, name)
    image = os.path.join(mount_path, ctx.settings.dir, name)
    if mode is not None and not stat.S_ISREG(mode):
        raise ProviderError(f"{image} is {imagedir.kind(mode)}, not a disk image: not showing it")
    shown = _forms(ctx, name)
    if args.json:
        print_json(shown)
    else:
        for key, value in shown.items():
            sys.stdout.write(f"{key}:\n  " + value.replace("\n", "\n  ") + "\n")
    if mode is None:
        diag.warn(f"there is no disk {name} on volume {ctx.volume} (no {image}): these name a "
                  "file that does not exist")
        return EXIT_WARNING
    return EXIT_OK


def _forms(ctx, name):
    """The disk's gluster URI, QEMU and libvirt forms."""
    location = Location(ctx.servers[0], ctx.settings.port, ctx.volume, ctx.settings.dir, name)
    port = ctx.settings.port
    servers = [{"type": "inet", "host": s, "port": str(port)} for s in ctx.servers]
    path = f"{ctx.settings.dir}/{name}"
    drive_servers = ",".join(f"file.server.{i}.type=inet,file.server.{i}.host={s},"
                             f"file.server.{i}.port={port}" for i, s in enumerate(ctx.servers))
    # cache.direct: O_DIRECT, as cache=none gives the -drive forms (QEMU's blockdev default is off)
    direct = {"direct": True, "no-flush": False}
    blockdev = json.dumps({"driver": "gluster", "volume": ctx.volume, "path": path, "server": servers,
                           "cache": direct, "node-name": "disk0-file"}, separators=(",", ":"))
    raw = json.dumps({"driver": "raw", "file": "disk0-file", "cache": direct, "node-name": "disk0"},
                     separators=(",", ":"))
    hosts = "\n".join(f"    <host name='{s}' port='{port}'/>" for s in ctx.servers)
    return {
        "uri": location.uri,
        "qemu_drive": f"-drive file={location.uri},format=raw,if=none,id=disk0,cache=none,aio=threads",
        "qemu_drive_all_servers": (f"-drive driver=raw,file.driver=gluster,file.volume={ctx.volume},"
                                   f"file.path={path},{drive_servers},if=none,id=disk0,cache=none"),
        "qemu_blockdev": f"-blockdev '{blockdev}' -blockdev '{raw}'",
        "libvirt_xml": (f"<disk type='network' device='disk'>\n"
                        f"  <driver name='qemu' type='raw' cache='none' io='native'/>\n"
                        f"  <source protocol='gluster' name='{ctx.volume}/{path}'>\n{hosts}\n  </source>\n"
                        f"  <target dev='vda' bus='virtio'/>\n</disk>"),
    }


# -- release -----------------------------------------------------------------------

def cmd_release(ctx, args):
    """Clears another node's open record of a disk: for a record that
    outlived its node's use of the disk (a node reinstalled, a detach that
    never ran), which would otherwise keep refusing exclusive opens."""
    from .. import open_records

    name = validate.disk_name("DISK", args.disk)
    with ctx.mounted() as mount_path:
        path = os.path.join(mount_path, ctx.settings.dir, name)
        if images.find_image(mount_path, ctx.settings.dir, name) is None:
            raise ProviderError(f"there is no disk {name} on volume {ctx.volume}")
        records = open_records.read(path)
        node = _holder_to_release(ctx, name, records, args.node)
        record = records[node]
        question = f"clear {node}'s open record of {name} ({record.describe()}){_still_connected(ctx, record)}?"
        if not args.yes:
            if not sys.stdin.isatty():
                raise ProviderError(f"not clearing {node}'s open record of {name} without confirmation: "
                                    "not on a terminal (--yes confirms)")
            sys.stderr.write(f"{question} [y/N] ")
            sys.stderr.flush()
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                raise ProviderError(f"{node}'s open record of {name} left alone")
        open_records.forget(path, node)
    sys.stdout.write(f"released {name}: cleared {node}'s open record ({record.describe()})\n")
    return EXIT_OK


def _holder_to_release(ctx, name, records, node):
    others = sorted(n for n in records if n != ctx.settings.node_name)
    if node:
        node = validate.node("--node", node)
        if node not in records:
            raise ProviderError(f"{node} holds no open record of {name} "
                                f"(holders: {', '.join(sorted(records)) or 'none'})")
        return node
    if not others:
        raise ProviderError(f"no other node holds an open record of {name}"
                            f"{' (this node does: close it)' if records else ''}")
    if len(others) > 1:
        raise ProviderError(f"{name} is open on {', '.join(others)}: say which with --node")
    return others[0]


def _still_connected(ctx, record):
    """A warning for the question when glusterd shows the holder's client
    still connected to the volume; nothing when it cannot tell."""
    from .. import gluster_cli

    if not record.address:
        return ""
    try:
        clients = gluster_cli.volume_clients(ctx.runner, ctx.reachable_server(), ctx.settings.port,
                                             ctx.volume, ctx.settings.command_timeout)
    except ProviderError:
        return ""
    if clients.bricks_of(record.address):
        return (f" — its client at {record.address} is STILL CONNECTED to volume {ctx.volume}: if it "
                "still runs the instance, fence it first")
    return ""
