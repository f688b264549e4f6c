"""ganeti-gluster list, orphans and show: the provider's disks on a volume."""

import json
import os
import sys

from .. import images, loopdev, open_records, validate
from ..errors import ProviderError
from ..location import Location
from . import EXIT_OK, EXIT_WARNING, human_size, print_json, table


def disks_on_volume(ctx):
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


def cmd_orphans(ctx, args):
    owners = _instances(ctx, args)
    orphans = [d for d in disks_on_volume(ctx) if d["instance"] not in owners]
    unknown = set(args.delete) - {d["name"] for d in orphans}
    if unknown:
        raise ProviderError(f"not orphans (or not on {ctx.volume}), left alone: {', '.join(sorted(unknown))}")
    deleted = []
    for disk in orphans:
        if disk["name"] in args.delete:
            _delete(ctx, disk)
            deleted.append(disk["name"])
    if args.json:
        print_json({"orphans": orphans, "deleted": deleted})
    else:
        rows = [[d["name"], human_size(d["size"]), human_size(d["allocated"]), d["instance"] or "(no metadata)",
                 "deleted" if d["name"] in deleted else ""] for d in orphans]
        if rows:
            sys.stdout.write(table(rows, ["Disk", "Size", "Allocated", "Last instance", ""]))
        sys.stdout.write(f"{len(orphans)} orphaned disks of {human_size(sum(d['size'] for d in orphans))}"
                         f"{f', {len(deleted)} deleted' if deleted else ''}\n")
    return EXIT_WARNING if len(orphans) > len(deleted) else EXIT_OK


def _delete(ctx, disk):
    from .. import operations
    from ..request import GANETI, Request

    if disk["open"]:
        raise ProviderError(f"{disk['name']} is open on {', '.join(disk['open'])}; left alone")
    request = Request(action="remove", dialect=GANETI, name=disk["name"], params={})
    operations.remove(request, ctx.settings, ctx.runner, [])


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
        print_json(shown)
    else:
        for key, value in shown.items():
            sys.stdout.write(f"{key}:\n  " + value.replace("\n", "\n  ") + "\n")
    return EXIT_OK

