"""Ganeti 3.1's -blockdev flattening, the reason a KVM instance with an
access=userspace gluster disk cannot start there, and the fix in
docs/ganeti-3.1-kvm-gluster-userspace.patch: Ganeti's own functions, from its
own kvm_utils.py as Debian 13's ganeti 3.1 installs it in the e2e's trixie
root (E2E_TRIXIE_ROOT; tests/e2e/run runs this after building the root), run
unpatched and patched."""

import ast
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(os.environ["E2E_TRIXIE_ROOT"], "usr/share/ganeti/3.1/ganeti/hypervisor/hv_kvm/kvm_utils.py")
PATCH = os.path.join(os.path.dirname(os.path.dirname(HERE)), "docs", "ganeti-3.1-kvm-gluster-userspace.patch")
URI = "gluster://10.0.0.1:24007/gv0/ganeti/disk0"
FUNCTIONS = ("TranslateBoolToOnOff", "ParseStorageUriToBlockdevParam", "FlattenDict", "DictToQemuStringNotation")


def ganeti_functions(path):
    """The functions of a kvm_utils.py and its module-level regexes, without
    importing the rest of Ganeti (its imports are the only thing left out)."""
    tree = ast.parse(open(path).read())
    kept = [node for node in tree.body if isinstance(node, ast.Assign)
            or (isinstance(node, ast.FunctionDef) and node.name in FUNCTIONS)]
    namespace = {"re": __import__("re"), "logging": __import__("logging"),
                 "errors": type("errors", (), {"HypervisorError": Exception})}
    exec(compile(ast.Module(body=kept, type_ignores=[]), path, "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    tree = tmp_path_factory.mktemp("ganeti")
    target = tree / "lib" / "hypervisor" / "hv_kvm"
    target.mkdir(parents=True)
    shutil.copy(SOURCE, target / "kvm_utils.py")
    subprocess.run(["patch", "-p1", "--quiet", "-d", str(tree), "-i", PATCH], check=True)
    return ganeti_functions(str(target / "kvm_utils.py"))


def blockdev(functions):
    """The -blockdev argument Ganeti 3.1 builds for a userspace gluster disk
    (hv_kvm's _GenerateKVMBlockDevice: a raw node over the URI's driver)."""
    return functions["DictToQemuStringNotation"]({
        "driver": "raw", "node-name": "disk-0", "discard": "ignore",
        "cache": {"direct": True, "no-flush": False},
        "file": functions["ParseStorageUriToBlockdevParam"](URI), "auto-read-only": False})


def test_unpatched_ganeti_writes_the_server_list_as_a_python_repr():
    """Pinned: what QEMU refuses with "Invalid parameter ' 'host'..."."""
    argument = blockdev(ganeti_functions(SOURCE))
    assert "file.server=[{'type': 'inet', 'host': '10.0.0.1', 'port': '24007'}]" in argument


def test_patched_ganeti_numbers_the_servers_as_qemu_wants(patched):
    argument = blockdev(patched).split(",")
    assert argument == ["driver=raw", "node-name=disk-0", "discard=ignore", "cache.direct=on",
                        "cache.no-flush=off", "file.driver=gluster", "file.server.0.type=inet",
                        "file.server.0.host=10.0.0.1", "file.server.0.port=24007", "file.volume=gv0",
                        "file.path=ganeti/disk0", "auto-read-only=off"]


def test_patch_changes_nothing_without_lists(patched):
    original = ganeti_functions(SOURCE)
    value = {"driver": "raw", "discard": True, "file": {"driver": "host_device", "filename": "/dev/loop0",
                                                        "aio": "threads", "locking": {"x": False}}}
    assert patched["FlattenDict"](value) == original["FlattenDict"](value)


def test_patched_lists_keep_order_and_nest(patched):
    value = {"server": [{"host": "a", "tls": True}, {"host": "b"}], "ids": ["x", "y"]}
    assert patched["FlattenDict"](value) == {"server.0.host": "a", "server.0.tls": "on", "server.1.host": "b",
                                             "ids.0": "x", "ids.1": "y"}
