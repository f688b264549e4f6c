"""Can this node's Ganeti start a KVM instance whose disk has access=userspace?

Ganeti 3.0 hands QEMU the gluster:// line attach prints (-drive file=...).
Ganeti 3.1 builds -blockdev from it with kvm_utils.FlattenDict, which writes
the server list as a Python repr that QEMU refuses, so the instance cannot
start (tests/e2e/OBSERVED.md). The installed FlattenDict itself is asked how
it writes a one-server list.
"""

import ast

KVM_UTILS = "/usr/share/ganeti/default/ganeti/hypervisor/hv_kvm/kvm_utils.py"
FIX = ("give KVM instances' disks access=kernelspace (the default), or patch Ganeti with "
       "docs/ganeti-3.1-kvm-gluster-userspace.patch from ganeti-extstorage-gluster's source")


def userspace_problem(path=KVM_UTILS):
    """None if this node's Ganeti gives QEMU a gluster server it accepts (3.0,
    a fixed 3.1, or no Ganeti with -blockdev here); else what goes wrong."""
    try:
        with open(path) as handle:
            tree = ast.parse(handle.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)
                 and node.name in ("FlattenDict", "TranslateBoolToOnOff")]
    namespace = {}
    try:
        exec(compile(ast.Module(body=functions, type_ignores=[]), path, "exec"), namespace)
        flat = namespace["FlattenDict"]({"server": [{"type": "inet", "host": "h", "port": "24007"}]})
    except Exception:  # noqa: BLE001 - a Ganeti we cannot read says nothing either way
        return None
    if flat.get("server.0.host") == "h":
        return None
    return ("this node's Ganeti cannot start a KVM instance with an access=userspace disk: it "
            f"writes QEMU's gluster server list as {flat.get('server')!r} ({path})")


def findings():
    """For ganeti-gluster check: a warning, with the way out, when this node's
    Ganeti cannot start userspace disks; nothing otherwise."""
    from .health import WARNING, Finding

    problem = userspace_problem()
    return [Finding(WARNING, "ganeti-userspace", problem, FIX)] if problem else []
