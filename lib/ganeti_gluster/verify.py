"""verify: named checks of the configuration and the volume behind a disk.

Ganeti 3.0/3.1 never runs verify; operators and monitoring do. Each check
prints one line on stdout: '<check>: ok|FAILED: <detail>'.
"""

import os

from . import gluster_cli
from .errors import BadInput, ProviderError
from .mount import PROBE_TIMEOUT, VolumeMount, tcp_probe


def _config(settings, runner):
    servers = settings.require("servers")
    volume = settings.require("volume")
    return (f"servers {','.join(servers)} port {settings.port} volume {volume} "
            f"dir {settings.dir} preallocation {settings.preallocation}")


def _server(settings, runner):
    results = {s: tcp_probe(s, settings.port, PROBE_TIMEOUT) for s in settings.require("servers")}
    down = [f"{s}:{settings.port} {why}" for s, why in results.items() if why]
    if len(down) == len(results):
        raise ProviderError("no server reachable: " + "; ".join(down))
    up = [s for s, why in results.items() if not why]
    return f"reachable: {', '.join(up)}" + (f"; unreachable: {'; '.join(down)}" if down else "")


def _volume_info(settings, runner):
    volume = settings.require("volume")
    for server in settings.require("servers"):
        if tcp_probe(server, settings.port, PROBE_TIMEOUT) is None:
            info = gluster_cli.volume_info(runner, server, settings.port, volume,
                                           settings.command_timeout)
            if info is None:
                raise ProviderError(f"volume {volume} does not exist on {server}")
            return info
    raise ProviderError("no server reachable to ask about the volume")


def _volume(settings, runner):
    info = _volume_info(settings, runner)
    if not info.started:
        raise ProviderError(f"volume {info.name} is {info.status}, not Started")
    return f"{info.name} is {info.status} ({info.type}, replica {info.replica_count})"


def _odirect(settings, runner):
    info = _volume_info(settings, runner)
    value = info.options.get("performance.strict-o-direct", "off")
    if value not in ("on", "enable", "true", "yes"):
        raise ProviderError(f"performance.strict-o-direct is {value} on {info.name}: O_DIRECT writes "
                            "can be acknowledged and then lost; fix: gluster volume set "
                            f"{info.name} performance.strict-o-direct on")
    return "performance.strict-o-direct is on"


def _space(settings, runner):
    mount = VolumeMount(settings, runner, settings.require("servers")[0], settings.port,
                        settings.require("volume"))
    path = mount.acquire()
    try:
        stats = os.statvfs(path)
    finally:
        mount.release(unmount_if_unused=True)
    total = stats.f_blocks * stats.f_frsize
    free = stats.f_bavail * stats.f_frsize
    percent = 100.0 * free / total if total else 0.0
    detail = f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB ({percent:.1f}%)"
    if percent < settings.min_free_percent:
        raise ProviderError(f"{detail}, below min_free_percent {settings.min_free_percent:g}")
    return detail


CHECKS = {"config": _config, "server": _server, "volume": _volume, "odirect": _odirect,
          "space": _space}


def run(settings, runner, names):
    for name in names:
        if name not in CHECKS:
            raise BadInput(f"unknown check {name!r}; checks: {', '.join(CHECKS)}")
    lines, failed = [], []
    for name in names or CHECKS:
        try:
            lines.append(f"{name}: ok: {CHECKS[name](settings, runner)}")
        except ProviderError as exc:
            lines.append(f"{name}: FAILED: {exc}")
            failed.append(f"{name}: {exc}")
    if failed:
        raise ProviderError("verify failed: " + "; ".join(failed), output=lines)
    return lines
