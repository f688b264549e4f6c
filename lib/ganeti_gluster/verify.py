"""verify: named checks of the configuration and the volume behind a disk.

Ganeti 3.0/3.1 never runs verify; operators and monitoring do. Each check
prints one line on stdout: '<check>: ok|FAILED: <detail>'.
"""

import functools

from .errors import BadInput, ProviderError
from . import servers
from .mount import VolumeMount


def _config(settings, runner):
    servers = settings.require("servers")
    volume = settings.require("volume")
    return (f"servers {','.join(servers)} port {settings.port} volume {volume} "
            f"dir {settings.dir} preallocation {settings.preallocation}")


def _server(settings, runner):
    up, down = servers.probe_all(settings.require("servers"), settings.port)
    if not up:
        raise ProviderError("no server reachable: " + "; ".join(down))
    return f"reachable: {', '.join(up)}" + (f"; unreachable: {'; '.join(down)}" if down else "")


@functools.lru_cache(maxsize=1)
def _facts(settings, runner):
    """What glusterd says about the volume, asked once per verify run
    (the volume, odirect and health checks all need it)."""
    from .health import VolumeFacts

    volume = settings.require("volume")
    server = servers.first_reachable(settings.require("servers"), settings.port)
    return VolumeFacts(runner, server, settings.port, volume, settings.command_timeout)


def _volume(settings, runner):
    facts = _facts(settings, runner)
    if not facts.started:
        raise ProviderError(f"volume {facts.name} is {facts.status}, not Started")
    offline = [b.name for b in facts.bricks if b.online is False]
    if offline:
        raise ProviderError(f"volume {facts.name}: bricks offline: {', '.join(offline)}")
    return f"{facts.name} is {facts.status} ({facts.type}, replica {facts.replica_count}), all bricks online"


def _finding(settings, runner, check):
    from . import health

    found = [f for f in health.findings(_facts(settings, runner), settings.min_free_percent)
             if f.check == check]
    if not found:
        return None
    if found[0].severity == health.ERROR:
        raise ProviderError(found[0].message + (f"; fix: {found[0].fix}" if found[0].fix else ""))
    return found[0].message


def _odirect(settings, runner):
    return _finding(settings, runner, "strict-o-direct")


def _health(settings, runner):
    """Everything `ganeti-gluster check` looks at: errors fail, warnings are listed."""
    from . import health

    facts = _facts(settings, runner)
    space = VolumeMount(settings, runner, settings.require("servers")[0], settings.port,
                        facts.name).space() if facts.started else None
    found = health.findings(facts, settings.min_free_percent, space)
    errors = [f for f in found if f.severity == health.ERROR]
    if errors:
        raise ProviderError("; ".join(f.message for f in errors))
    warnings = [f.check for f in found if f.severity == health.WARNING]
    return f"no errors; warnings: {', '.join(warnings)}" if warnings else "no errors, no warnings"


def _space(settings, runner):
    mount = VolumeMount(settings, runner, settings.require("servers")[0], settings.port,
                        settings.require("volume"))
    free, total = mount.space()
    percent = 100.0 * free / total if total else 0.0
    detail = f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB ({percent:.1f}%)"
    if percent < settings.min_free_percent:
        raise ProviderError(f"{detail}, below min_free_percent {settings.min_free_percent:g}")
    return detail


def _ganeti(settings, runner):
    """Whether this node's Ganeti can start a KVM instance whose disk has
    access=userspace. Kernelspace disks work either way, so this warns and
    does not fail."""
    from . import ganeti_kvm

    problem = ganeti_kvm.userspace_problem()
    if problem:
        return f"warning: {problem}; {ganeti_kvm.FIX}"
    return "access=userspace disks can start here (Ganeti 3.0, a fixed 3.1, or no Ganeti KVM)"


CHECKS = {"config": _config, "server": _server, "volume": _volume, "odirect": _odirect,
          "space": _space, "health": _health, "ganeti": _ganeti}


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
