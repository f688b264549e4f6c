"""ganeti-gluster check, tune and status: the volume itself."""

import os
import sys

from .. import diag, fencing, ganeti_kvm, gluster_cli, health
from ..procfs import mount_entry
from . import EXIT_OK, SEVERITY_EXIT, human_size, print_json
from .disks import disks_on_volume


def cmd_check(ctx, args):
    facts = ctx.facts()
    found = health.findings(facts, ctx.settings.min_free_percent, ctx.space(facts)) + ganeti_kvm.findings()
    worst = health.worst(found)
    if args.json:
        print_json({"volume": facts.name, "worst": worst, "findings": [f.as_dict() for f in found]})
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
        print_json([{"option": o, "current": c, "wanted": w} for o, c, w in todo])
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


# -- status ----------------------------------------------------------------------

def _status(ctx):
    facts = ctx.facts()
    mounts = []
    base = ctx.settings.mount_base
    if os.path.isdir(base):
        mounts = [v for v in sorted(os.listdir(base)) if mount_entry(os.path.join(base, v))]
    disks = disks_on_volume(ctx) if facts.started else []
    free, total = ctx.space(facts) or (facts.size_free, facts.size_total)
    return {
        "volume": facts.name, "started": facts.started, "type": facts.type,
        "replica": facts.replica_count, "bricks_total": len(facts.bricks),
        "bricks_up": sum(bool(b.online) for b in facts.bricks),
        "heal_entries": facts.heal_entries, "split_brain_entries": facts.split_brain_entries,
        "bytes_total": total, "bytes_free": free,
        "disks": len(disks), "disks_attached_here": sum(bool(d["device"]) for d in disks),
        "mounts_here": mounts,
        "fenced": fencing.reject_list(facts.set_options),
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
        print_json(status)
    else:
        heal = "-" if status["heal_entries"] is None else status["heal_entries"]
        split = "-" if status["split_brain_entries"] is None else status["split_brain_entries"]
        sys.stdout.write(
            f"volume {status['volume']}: {'started' if status['started'] else 'STOPPED'}, "
            f"{status['type']} replica {status['replica']}, health {status['health']}\n"
            f"  bricks      {status['bricks_up']}/{status['bricks_total']} up\n"
            f"  heal        {heal} pending, {split} in split-brain\n"
            f"  space       {human_size(status['bytes_free'])} free of {human_size(status['bytes_total'])}\n"
            f"  disks       {status['disks']} ({status['disks_attached_here']} attached on this node)\n"
            f"  mounted on this node: {', '.join(status['mounts_here']) or 'none'}\n")
        if status["fenced"]:
            sys.stdout.write(f"  fenced      {', '.join(status['fenced'])} (auth.reject: refused by every brick)\n")
    return SEVERITY_EXIT[status["health"]]

