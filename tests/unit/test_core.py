"""Unit tests: parsing, validation, configuration precedence, URI round-trips,
and the error boundary. No server, no root-only devices: a fake runner."""

import io
import os
import re
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "lib"))

from ganeti_gluster import config, config_file, health, images, main as main_module, mount, open_records, procfs, request, servers, validate  # noqa: E402
from ganeti_gluster.errors import BadInput, ProviderError  # noqa: E402
from ganeti_gluster.location import Location  # noqa: E402
from ganeti_gluster.runner import Result  # noqa: E402

GANETI_31_URI = re.compile(r"^gluster://[a-z0-9.-]+:\d+/[^/]+/.+$")


class FailingRunner:
    """Every external command fails: nothing real is ever run."""

    def __init__(self):
        self.calls = []

    def run(self, args, timeout, check=True):
        self.calls.append(list(args))
        if check:
            raise ProviderError(f"{args[0]} failed: fake")
        return Result(1, "", "fake failure")


@pytest.fixture
def node_config(tmp_path, monkeypatch):
    """A valid node configuration file; mount base and caches under tmp_path."""
    path = tmp_path / "gluster.env"
    path.write_text(f"GLUSTER_SERVERS=gluster1.example.com,gluster2.example.com\n"
                    f"GLUSTER_VOLUME=vmstore\nGLUSTER_MOUNT_BASE={tmp_path}/mnt\n"
                    "GLUSTER_POOL_FAST_VOLUME=ssd\nGLUSTER_POOL_FAST_PREALLOCATION=falloc\n"
                    "GLUSTER_CALL_LOG=\n")
    path.chmod(0o600)
    monkeypatch.setattr(config_file, "CACHE_DIR", str(tmp_path / "cache"))
    return str(path)


# -- validation ----------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [("1", 1), ("10240", 10240), ("1073741824", 1 << 30)])
def test_sizes_are_whole_mib(value, expected):
    assert validate.size_mib("VOL_SIZE", value) == expected


@pytest.mark.parametrize("value", ["", "0", "-1", "1.5", "1e3", " 8", "8 ", "+8", "0x10", "８",
                                   "1073741825", "9999999999999", "8M", "\x008"])
def test_bad_sizes_are_refused_naming_the_variable(value):
    with pytest.raises(BadInput, match="VOL_SIZE"):
        validate.size_mib("VOL_SIZE", value)


@pytest.mark.parametrize("value,expected", [("Gluster1.Example.COM", "gluster1.example.com"),
                                            ("10.0.0.1", "10.0.0.1"), ("a-b", "a-b")])
def test_hosts_are_lowercased(value, expected):
    assert validate.host("EXTP_SERVERS", value) == expected


@pytest.mark.parametrize("value", ["", "-a", "a-", "a..b", "a_b", "::1", "[::1]", "1.2.3.256",
                                   "01.2.3.4", "a b", "a,b", "a;b", "host\x00", "a" * 64,
                                   "backup-volfile-servers=x"])
def test_bad_hosts_are_refused(value):
    with pytest.raises(BadInput):
        validate.host("EXTP_SERVERS", value)


def test_server_lists_are_deduplicated_in_order():
    assert validate.hosts("S", "b,a,B,c,a") == ("b", "a", "c")
    with pytest.raises(BadInput):
        validate.hosts("S", "a,,b")


@pytest.mark.parametrize("value", ["0", "65536", "-1", "x", "", "24007,1", "0024007"])
def test_bad_ports_are_refused(value):
    with pytest.raises(BadInput):
        validate.port("EXTP_PORT", value)


@pytest.mark.parametrize("value", ["", "-gv", "g v", "gv/0", "gv,0", "gv=0", "a" * 129])
def test_bad_volume_names_are_refused(value):
    with pytest.raises(BadInput):
        validate.volume("EXTP_VOLUME", value)


@pytest.mark.parametrize("value,expected", [("ganeti", "ganeti"), ("/a/b/", "a/b"), ("vm.s", "vm.s")])
def test_directories_are_normalised(value, expected):
    assert validate.directory("EXTP_DIR", value) == expected


@pytest.mark.parametrize("value", ["", "/", "..", "a/../b", "a//b", ".hidden", "a b", "a\nb"])
def test_bad_directories_are_refused(value):
    with pytest.raises(BadInput):
        validate.directory("EXTP_DIR", value)


@pytest.mark.parametrize("value", ["", ".", "..", ".x", "a/b", "../x", "a b", "x\x00", "ü", "a" * 201])
def test_bad_disk_names_are_refused(value):
    with pytest.raises(BadInput):
        validate.disk_name("VOL_NAME", value)


def test_ganeti_disk_names_are_accepted():
    name = "1d2b7c3e-6f0a-4b8e-9c1d-2e3f4a5b6c7d.ext.disk0"
    assert validate.disk_name("VOL_NAME", name) == name
    assert validate.disk_name("VOL_NAME", name + ".snap") == name + ".snap"


def test_overlong_and_unprintable_values_are_refused():
    with pytest.raises(BadInput, match="too long"):
        validate.text("X", "a" * 1025)
    with pytest.raises(BadInput, match="non-printable"):
        validate.text("X", "a\x00b")


# -- locations and URIs -----------------------------------------------------------

label = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hosts = st.one_of(st.lists(label, min_size=1, max_size=4).map(".".join),
                  st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))))
segments = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,20}", fullmatch=True)
locations = st.builds(
    Location, host=hosts, port=st.integers(1, 65535),
    volume=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,20}", fullmatch=True),
    directory=st.lists(segments, min_size=1, max_size=3).map("/".join), name=segments)


@given(locations)
@settings(max_examples=500, deadline=None)
def test_uris_round_trip_exactly_and_fit_ganeti_31(location):
    uri = location.uri
    assert Location.from_uri("LOGICAL_ID", uri) == location
    assert GANETI_31_URI.match(uri)


@given(st.text(max_size=80))
@settings(max_examples=500, deadline=None)
def test_any_string_decodes_to_itself_or_is_refused(text):
    try:
        location = Location.from_uri("LOGICAL_ID", text)
    except BadInput:
        return
    assert location.uri == text


@pytest.mark.parametrize("uri", [
    "gluster://Host:24007/gv0/ganeti/x", "gluster://host/gv0/ganeti/x",
    "gluster://host:024007/gv0/ganeti/x", "gluster://host:24007/gv0/ganeti/x/",
    "gluster://host:24007/gv0/x", "gluster://host:24007/gv0//x", "gluster+tcp://host:24007/v/d/x",
    "gluster://host:24007/gv0/../x", "gluster://[::1]:24007/gv0/ganeti/x",
])
def test_non_canonical_uris_are_refused(uri):
    with pytest.raises(BadInput):
        Location.from_uri("LOGICAL_ID", uri)


# -- requests -----------------------------------------------------------------------

def test_ganeti_requests_carry_every_variable():
    req = request.parse("grow", {"VOL_NAME": "a.ext.disk0", "VOL_SIZE": "10", "VOL_NEW_SIZE": "20",
                                 "EXTP_VOLUME": "gv1", "EXTP_PROVIDER": "gluster"})
    assert (req.dialect, req.name, req.size_mib, req.new_size_mib) == ("ganeti", "a.ext.disk0", 10, 20)
    assert req.params == {"volume": "gv1", "provider": "gluster"}


@pytest.mark.parametrize("action,env,missing", [
    ("create", {"VOL_NAME": "a"}, "VOL_SIZE"), ("grow", {"VOL_NAME": "a"}, "VOL_NEW_SIZE"),
    ("setinfo", {"VOL_NAME": "a"}, "VOL_METADATA"), ("open", {"VOL_NAME": "a"}, "VOL_OPEN_EXCLUSIVE"),
    ("snapshot", {"VOL_NAME": "a"}, "VOL_SNAPSHOT_NAME"), ("attach", {}, "VOL_NAME"),
    ("resize", {"LOGICAL_ID": "gluster://h:1/v/d/n"}, "DISK_SIZE"),
    ("rename", {"LOGICAL_ID": "gluster://h:1/v/d/n"}, "NEW_INSTANCE_NAME"),
    ("create", {"INSTANCE_NAME": "i", "DISK_SIZE": "1"}, "DISK_INDEX"),
])
def test_each_action_names_the_variable_it_misses(action, env, missing):
    with pytest.raises(BadInput, match=missing):
        request.parse(action, env)


def test_design_create_derives_the_name_from_the_instance():
    req = request.parse("create", {"INSTANCE_NAME": "Web1.Example.com", "DISK_INDEX": "2",
                                   "DISK_SIZE": "512", "POOL": "fast"})
    assert (req.dialect, req.name, req.size_mib, req.pool) == ("design", "web1.example.com-disk2", 512, "fast")


def test_design_requests_decode_the_logical_id():
    req = request.parse("resize", {"LOGICAL_ID": "gluster://h:24007/gv0/ganeti/x-disk0", "DISK_SIZE": "64"})
    assert req.logical_id.volume == "gv0" and req.name == "x-disk0" and req.new_size_mib == 64


@pytest.mark.parametrize("action,env", [
    ("attach", {"VOL_NAME": "a", "LOGICAL_ID": "gluster://h:1/v/d/n"}),
    ("grow", {"VOL_NAME": "a", "VOL_NEW_SIZE": "2", "INSTANCE_NAME": "x"}),
    ("resize", {"VOL_NAME": "a", "DISK_SIZE": "2"}),
])
def test_mixed_dialects_are_refused(action, env):
    with pytest.raises(BadInput, match="dialect|belongs"):
        request.parse(action, env)


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE", ""])
def test_open_exclusive_is_true_or_false_exactly(value):
    with pytest.raises(BadInput):
        request.parse("open", {"VOL_NAME": "a", "VOL_OPEN_EXCLUSIVE": value})


def test_snapshot_name_must_differ():
    with pytest.raises(BadInput):
        request.parse("snapshot", {"VOL_NAME": "a", "VOL_SNAPSHOT_NAME": "a"})


def test_unknown_action_is_refused():
    with pytest.raises(BadInput, match="unknown action"):
        request.parse("destroy", {"VOL_NAME": "a"})


# -- configuration precedence ---------------------------------------------------------

def test_file_then_defaults(node_config):
    s = config.load({}, {"GLUSTER_CONFIG": node_config})
    assert s.servers == ("gluster1.example.com", "gluster2.example.com")
    assert (s.volume, s.port, s.dir, s.preallocation) == ("vmstore", 24007, "ganeti", "sparse")


def test_environment_beats_the_file_and_extp_beats_both(node_config):
    env = {"GLUSTER_CONFIG": node_config, "GLUSTER_VOLUME": "fromenv", "GLUSTER_PORT": "24010"}
    assert config.load({}, env).volume == "fromenv"
    s = config.load({"volume": "fromdisk"}, env)
    assert (s.volume, s.port) == ("fromdisk", 24010)


def test_a_pool_sits_between_extp_and_node_settings(node_config):
    env = {"GLUSTER_CONFIG": node_config, "GLUSTER_VOLUME": "fromenv"}
    s = config.load({"pool": "fast"}, env)
    assert (s.volume, s.preallocation, s.pool) == ("ssd", "falloc", "fast")
    assert config.load({"pool": "fast", "volume": "mine"}, env).volume == "mine"
    assert config.load({}, env, pool="FAST").volume == "ssd"  # the design dialect's POOL


def test_unmount_delay_defaults_to_10_s_and_may_be_0(node_config):
    assert config.load({}, {"GLUSTER_CONFIG": node_config}).unmount_delay == 10
    env = {"GLUSTER_CONFIG": node_config, "GLUSTER_UNMOUNT_DELAY": "0"}
    assert config.load({}, env).unmount_delay == 0


@pytest.mark.parametrize("value", ["-1", "601", "nan", "inf", "soon", ""])
def test_unmount_delay_outside_0_to_600_s_is_refused(node_config, value):
    env = {"GLUSTER_CONFIG": node_config, "GLUSTER_UNMOUNT_DELAY": value}
    with pytest.raises(BadInput, match="GLUSTER_UNMOUNT_DELAY"):
        config.load({}, env)


@pytest.mark.parametrize("name,value", [
    ("FUSE_READER_THREADS", "0"), ("FUSE_READER_THREADS", "65"), ("FUSE_READER_THREADS", "1.5"),
    ("FUSE_ATTRIBUTE_TIMEOUT", "-1"), ("FUSE_ENTRY_TIMEOUT", "61"), ("FUSE_NEGATIVE_TIMEOUT", "soon"),
    ("CLIENT_EVENT_THREADS", "33"), ("CLIENT_IO_THREADS", "x"), ("LOOP_SECTOR_SIZE", "8192"),
    ("LOOP_SECTOR_SIZE", ""), ("LOOP_QUEUE", "dio=0"), ("LOOP_QUEUE", "scheduler"),
    ("LOOP_QUEUE", "scheduler=a;b"), ("LOOP_QUEUE", "../../loop0/loop/autoclear=1")])
def test_bad_kernel_path_tuning_is_refused_naming_the_setting(node_config, name, value):
    with pytest.raises(BadInput, match=f"GLUSTER_{name}"):
        config.load({}, {"GLUSTER_CONFIG": node_config, f"GLUSTER_{name}": value})


def test_kernel_path_tuning_is_parsed(node_config):
    env = {"GLUSTER_CONFIG": node_config, "GLUSTER_LOOP_QUEUE": " scheduler=mq-deadline  nr_requests=64 ",
           "GLUSTER_LOOP_SECTOR_SIZE": "4096", "GLUSTER_CLIENT_IO_THREADS": "8"}
    settings = config.load({}, env)
    assert settings.loop_queue == (("scheduler", "mq-deadline"), ("nr_requests", "64"))
    assert (settings.loop_sector_size, settings.client_io_threads, settings.client_event_threads) == (4096, 8, "")


def test_undefined_pool_and_unknown_names_are_refused(node_config):
    env = {"GLUSTER_CONFIG": node_config}
    with pytest.raises(BadInput, match="pool 'nope' is not defined"):
        config.load({"pool": "nope"}, env)
    with pytest.raises(BadInput, match="unknown disk parameter"):
        config.load({"volum": "x"}, env)
    with pytest.raises(BadInput, match="unknown setting"):
        config.load({}, {**env, "GLUSTER_VOLUM": "x"})


def test_node_settings_never_come_from_a_disk(node_config):
    with pytest.raises(BadInput, match="unknown disk parameter 'mount_base'"):
        config.load({"mount_base": "/"}, {"GLUSTER_CONFIG": node_config})


def test_unknown_key_in_the_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(config_file, "CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "bad.env"
    path.write_text("GLUSTER_VOLUME=x\nVOLUME=y\n")
    path.chmod(0o600)
    with pytest.raises(BadInput, match="unknown setting 'VOLUME'"):
        config.load({}, {"GLUSTER_CONFIG": str(path)})


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_a_file_others_can_write_is_refused(node_config, mode):
    os.chmod(node_config, mode)
    with pytest.raises(BadInput, match="writable"):
        config.load({}, {"GLUSTER_CONFIG": node_config})


def test_missing_files(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.env"))
    assert config.load({}, {}).volume is None  # the default file may be absent
    with pytest.raises(BadInput, match="does not exist"):
        config.load({}, {"GLUSTER_CONFIG": str(tmp_path / "absent.env")})
    with pytest.raises(BadInput, match="no volume configured"):
        config.load({}, {}).require("volume")


def test_the_parse_cache_follows_edits(node_config):
    env = {"GLUSTER_CONFIG": node_config}
    assert config.load({}, env).volume == "vmstore"
    assert config.load({}, env).volume == "vmstore"  # from the cache
    with open(node_config, "a") as handle:
        handle.write("GLUSTER_DIR=elsewhere\n")
    assert config.load({}, env).dir == "elsewhere"


def test_parameters_list_matches_the_parameters():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "providers", "gluster", "parameters.list")) as handle:
        listed = dict(line.rstrip("\n").split(" ", 1) for line in handle if line.strip())
    assert listed == config.PARAMETER_DESCRIPTIONS


# -- the error boundary -----------------------------------------------------------------

def call(action, env, args=(), runner=None):
    out, err = io.StringIO(), io.StringIO()
    old = sys.stderr
    sys.stderr = err
    try:
        code = main_module.main(action, list(args), environ=env, runner=runner or FailingRunner(),
                                stdout=out)
    finally:
        sys.stderr = old
    return code, out.getvalue(), err.getvalue()


def test_help_goes_to_stdout():
    code, out, _ = call("attach", {}, ["--help"])
    assert code == 0 and out.startswith("usage: attach")


def test_arguments_to_a_script_are_refused_with_usage():
    code, out, err = call("attach", {"VOL_NAME": "a"}, ["x"])
    assert code == 2 and out == "" and "usage: attach" in err


def test_bad_input_is_one_line_exit_2(node_config):
    code, out, err = call("create", {"GLUSTER_CONFIG": node_config, "VOL_NAME": "../x", "VOL_SIZE": "1"})
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("gluster create: error: VOL_NAME")


def test_a_failing_tool_is_one_last_line_exit_1(node_config):
    code, out, err = call("attach", {"GLUSTER_CONFIG": node_config, "VOL_NAME": "a.ext.disk0",
                                     "GLUSTER_MOUNT_TIMEOUT": "1"})
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.splitlines()[-1].startswith("gluster attach: error: cannot mount volume vmstore")


def test_a_bug_keeps_its_traceback_and_still_ends_with_one_line(node_config, monkeypatch):
    from ganeti_gluster import operations

    def broken(*args):
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(operations.SCRIPTS, "close", broken)
    code, out, err = call("close", {"GLUSTER_CONFIG": node_config, "VOL_NAME": "a"})
    assert code == 1 and out == "" and "Traceback" in err
    assert err.splitlines()[-1] == "gluster close: error: internal error: ZeroDivisionError: boom"


# -- mounts, with a fake mountinfo and a fake runner ----------------------------------------

def test_mountinfo_parsing_unescapes_and_takes_the_last_entry(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "36 25 0:32 / /run/x\\040y rw - tmpfs tmpfs rw\n"
        "37 25 0:33 / /run/x\\040y rw shared:1 - fuse.glusterfs h:/gv0 rw,user_id=0\n")
    assert procfs.mount_entry("/run/x y", str(info)) == ("fuse.glusterfs", "h:/gv0")
    assert procfs.mount_entry("/run/other", str(info)) is None


def test_a_failed_mount_names_each_unreachable_server(node_config, monkeypatch):
    s = config.load({}, {"GLUSTER_CONFIG": node_config})
    monkeypatch.setattr(servers, "tcp_probe", lambda host, port, timeout=0: "connection refused")
    volume_mount = mount.VolumeMount(s, FailingRunner(), "gluster1.example.com", 24007, "vmstore")
    reason = volume_mount.diagnose(ProviderError("mount failed"))
    assert "gluster1.example.com:24007 connection refused" in reason
    assert "gluster2.example.com:24007 connection refused" in reason


@pytest.mark.parametrize("xml,expected", [
    ("<cliOutput><opRet>-1</opRet><opErrstr>Volume vmstore does not exist</opErrstr></cliOutput>",
     "does not exist"),
    ("<cliOutput><opRet>0</opRet><volInfo><volumes><volume><name>vmstore</name>"
     "<statusStr>Stopped</statusStr></volume></volumes></volInfo></cliOutput>", "is not started"),
])
def test_a_failed_mount_says_whether_the_volume_is_missing_or_stopped(node_config, monkeypatch, xml, expected):
    s = config.load({}, {"GLUSTER_CONFIG": node_config})
    monkeypatch.setattr(servers, "tcp_probe", lambda host, port, timeout=0: None)

    class Runner(FailingRunner):
        def run(self, args, timeout, check=True):
            return Result(0, xml, "") if args[0] == "gluster" else super().run(args, timeout, check)

    reason = mount.VolumeMount(s, Runner(), "gluster1.example.com", 24007, "vmstore").diagnose(
        ProviderError("mount failed"))
    assert expected in reason and "vmstore" in reason


def test_backup_servers_are_the_others_once(node_config):
    s = config.load({"servers": "b,a,b,c"}, {"GLUSTER_CONFIG": node_config})
    assert mount.VolumeMount(s, None, "b", 24007, "v").servers == ["b", "a", "c"]


# -- images on a local filesystem -------------------------------------------------------------

def test_create_never_leaves_a_partial_disk_under_its_name(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    path = str(tmp_path / "d" / "disk0")

    def failing_extend(fd, start, end, preallocation, label):
        os.ftruncate(fd, 4096)
        raise ProviderError("disk full")

    monkeypatch.setattr(images, "_extend", failing_extend)
    with pytest.raises(ProviderError):
        images.create(path, 1 << 20, "full")
    assert os.listdir(tmp_path / "d") == []


def test_create_and_rename_never_replace_a_disk(tmp_path):
    existing = tmp_path / "disk0"
    existing.write_bytes(b"precious")
    with pytest.raises(ProviderError):
        images.create(str(existing), 1 << 20, "sparse")
    other = tmp_path / "disk1"
    other.write_bytes(b"other")
    with pytest.raises(ProviderError):
        images.rename(str(other), str(existing))
    assert existing.read_bytes() == b"precious" and other.read_bytes() == b"other"


def test_grow_refuses_to_shrink(tmp_path):
    path = str(tmp_path / "disk0")
    images.create(path, 2 << 20, "sparse")
    with pytest.raises(ProviderError, match="shrink"):
        images.grow(path, 1 << 20, "sparse")
    images.grow(path, 3 << 20, "falloc")
    assert os.path.getsize(path) == 3 << 20


def test_sparse_copy_keeps_holes_and_data(tmp_path):
    source = str(tmp_path / "src")
    with open(source, "wb") as handle:
        handle.truncate(64 << 20)
        handle.seek(10 << 20)
        handle.write(os.urandom(1 << 20))
    images.snapshot(source, str(tmp_path / "dst"))
    with open(source, "rb") as a, open(tmp_path / "dst", "rb") as b:
        assert a.read() == b.read()
    assert os.stat(tmp_path / "dst").st_blocks * 512 < 8 << 20


def test_sparse_copy_skips_written_zeros_and_keeps_an_unaligned_tail(tmp_path):
    source = str(tmp_path / "src")
    head, tail = os.urandom(3 << 20), os.urandom(12345)
    with open(source, "wb") as handle:
        handle.write(head + bytes(4 << 20) + tail)  # zeros written as data, not a hole
    images.snapshot(source, str(tmp_path / "dst"))
    with open(source, "rb") as a, open(tmp_path / "dst", "rb") as b:
        assert a.read() == b.read()
    assert os.stat(tmp_path / "dst").st_blocks * 512 < 4 << 20


def _copy_recording_direct_writes(monkeypatch, directory, data):
    """sparse_copy.copy of `data` in `directory`: the copy, and (length,
    O_DIRECT set) of every write."""
    import fcntl
    from ganeti_gluster import sparse_copy
    writes, pwrite = [], os.pwrite

    def recording(fd, buffer, offset):
        writes.append((len(buffer), bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)))
        return pwrite(fd, buffer, offset)

    monkeypatch.setattr(sparse_copy.os, "pwrite", recording)
    source, target = os.path.join(directory, "src"), os.path.join(directory, "dst")
    with open(source, "wb") as handle:
        handle.write(data)
    src, dst = os.open(source, os.O_RDONLY), os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        sparse_copy.copy(src, dst, len(data))
        assert not fcntl.fcntl(dst, fcntl.F_GETFL) & os.O_DIRECT  # the fd is as it was given
    finally:
        os.close(src)
        os.close(dst)
    with open(target, "rb") as handle:
        return handle.read(), writes


def test_sparse_copy_writes_with_o_direct_where_it_can_and_the_odd_tail_buffered(tmp_path, monkeypatch):
    data = os.urandom(5 << 20) + os.urandom(777)
    copied, writes = _copy_recording_direct_writes(monkeypatch, str(tmp_path), data)
    assert copied == data
    assert writes == [(4 << 20, True), (1 << 20, True), (777, False)]


def test_sparse_copy_where_o_direct_is_refused(tmp_path, monkeypatch):
    import fcntl
    real = fcntl.fcntl

    def refusing(fd, command, arg=0):
        if command == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(22, "Invalid argument")  # as a file system without direct I/O answers
        return real(fd, command, arg)

    monkeypatch.setattr(fcntl, "fcntl", refusing)
    data = os.urandom(3 << 20)
    copied, writes = _copy_recording_direct_writes(monkeypatch, str(tmp_path), data)
    assert copied == data and writes == [(1 << 20, False)] * 3


def test_open_records_set_list_forget(tmp_path):
    path = str(tmp_path / "disk0")
    images.create(path, 1 << 20, "sparse")
    open_records.record(path, "node1", True)
    open_records.record(path, "node2", False, "10.0.0.2")
    records = open_records.read(path)
    assert {n: (r.mode, r.address) for n, r in records.items()} == {"node1": ("exclusive", None),
                                                                   "node2": ("shared", "10.0.0.2")}
    assert records["node2"].since.endswith("Z") and records["node2"].exclusive is False
    open_records.forget(path, "node1")
    open_records.forget(path, "node1")
    assert list(open_records.read(path)) == ["node2"]


@pytest.mark.parametrize("value,expected", [
    ("exclusive 2026-01-01T00:00:00Z", ("exclusive", "2026-01-01T00:00:00Z", None)),  # before addresses
    ("shared 2026-01-01T00:00:00Z fe80::1", ("shared", "2026-01-01T00:00:00Z", "fe80::1")),
    ("exclusive 2026-01-01T00:00:00Z 10.0.0.5;rm", ("exclusive", "2026-01-01T00:00:00Z", None)),
    ("", ("", "", None)),
])
def test_open_records_old_and_hostile_values_are_read(value, expected):
    record = open_records.parse(value)
    assert (record.mode, record.since, record.address) == expected


# -- ganeti-gluster join's tools --------------------------------------------------------------

def test_local_gluster_commands_use_the_configured_glusterd_socket():
    from ganeti_gluster import gluster_cli
    from ganeti_gluster.runner import Result

    asked = []

    class Recorder:
        def run(self, args, timeout, check=True):
            asked.append(args)
            return Result(0, "<cliOutput><opRet>0</opRet></cliOutput>", "")

    gluster_cli.query(Recorder(), None, 5, ["pool", "list"], "/proc/1/root/run/glusterd.socket")
    gluster_cli.query(Recorder(), None, 5, ["pool", "list"])
    gluster_cli.query(Recorder(), "server1", 5, ["volume", "info"], "/ignored.socket")
    gluster_cli.change(Recorder(), 5, ["peer", "probe", "new"], "/proc/1/root/run/glusterd.socket")
    assert asked[0][1] == "--glusterd-sock=/proc/1/root/run/glusterd.socket"
    assert not any(a.startswith("--glusterd-sock") or a.startswith("--remote-host") for a in asked[1])
    assert asked[2][1] == "--remote-host=server1" and not any("--glusterd-sock" in a for a in asked[2])
    assert asked[3] == ["gluster", "--glusterd-sock=/proc/1/root/run/glusterd.socket", "--mode=script",
                        "peer", "probe", "new"]


def test_the_node_add_hook_acts_on_the_master_only(tmp_path):
    import subprocess

    hook = os.path.join(os.path.dirname(__file__), "..", "..", "packaging", "hooks", "ganeti-gluster-join")
    env = {"PATH": "/usr/bin:/bin", "GANETI_HOOKS_PHASE": "post", "GANETI_NODE_NAME": "new.example.com",
           "GANETI_MASTER": "not-this-node.example.com"}
    # On a node that is not the master it must do nothing and succeed, even
    # with no provider installed and no configuration.
    done = subprocess.run([hook], env=env, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


# -- locks ---------------------------------------------------------------------------------------

def test_a_lock_wait_is_bounded_and_wakes_when_released(tmp_path):
    import subprocess
    import time as clock
    from ganeti_gluster.locks import Lock

    path = str(tmp_path / "x.lock")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl,sys,time; f=open(sys.argv[1],'w'); fcntl.flock(f, fcntl.LOCK_EX);"
                               " print('held', flush=True); time.sleep(float(sys.argv[2]))", path, "0.5"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(ProviderError, match="timed out after 0.2 s"):
        Lock(path, "test", 0.2).acquire()
    started = clock.monotonic()
    with Lock(path, "test", 5).acquire():
        waited = clock.monotonic() - started
    holder.wait()
    assert waited < 1.0  # woke when the holder exited, not at the 5 s bound


def test_a_lock_wait_outside_the_main_thread_is_bounded_too(tmp_path):
    """No alarm can be set outside the main thread: the wait polls instead."""
    import fcntl
    import threading
    from ganeti_gluster.locks import Lock

    path = str(tmp_path / "x.lock")
    outcome = []
    with open(path, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)

        def wait():
            try:
                Lock(path, "test", 0.2).acquire()
                outcome.append("acquired")
            except ProviderError as exc:
                outcome.append(str(exc))

        waiter = threading.Thread(target=wait)
        waiter.start()
        waiter.join(10)
    assert len(outcome) == 1 and outcome[0].startswith("timed out after 0.2 s")


def test_option_group_is_read_from_the_installed_glusterfs(tmp_path):
    (tmp_path / "virt").write_text("# a newer GlusterFS\nperformance.strict-o-direct=on\n\n"
                                   "features.shard=on\nnew.option=42\n")
    options, source = health.option_group("virt", str(tmp_path))
    assert options == {"performance.strict-o-direct": "on", "features.shard": "on", "new.option": "42"}
    assert source == f"{tmp_path}/virt"


@pytest.mark.parametrize("content", [None, "", "not a group line\n", "a=b c\n"])
def test_option_group_falls_back_to_the_built_in_set(tmp_path, content):
    if content is not None:
        (tmp_path / "distributed-virt").write_text(content)
    options, source = health.option_group("distributed-virt", str(tmp_path))
    assert options is health.DISTRIBUTED_VIRT_GROUP
    assert source.startswith("the built-in distributed-virt group (")


def test_qmp_sockets_are_read_from_both_command_line_forms():
    from ganeti_gluster import qmp

    argv = ["qemu-system-x86_64", "-qmp", "unix:/run/ganeti/kvm-hypervisor/ctrl/i.kvmd,server,nowait",
            "-chardev", "socket,id=mon1,path=/run/q/i.mon,server=on,wait=off", "-mon", "chardev=mon1,mode=control",
            "-chardev", "socket,id=ser,path=/run/q/i.serial,server=on", "-mon", "chardev=ser,mode=readline",
            "-qmp", "unix:/run/ganeti/kvm-hypervisor/ctrl/i.qmp,server=on,wait=off", "-drive", "file=x"]
    assert qmp.monitor_sockets(argv) == ["/run/ganeti/kvm-hypervisor/ctrl/i.qmp",
                                         "/run/ganeti/kvm-hypervisor/ctrl/i.kvmd", "/run/q/i.mon"]


@pytest.mark.parametrize("filename, access", [
    ("gluster://10.0.0.1:24007/gv0/ganeti/disk1", "userspace"),
    ("gluster+tcp://10.0.0.1/gv0/ganeti/disk1", "userspace"),
    ("gluster://10.0.0.1:24007/gv0/ganeti/disk10", None),
    ("gluster://10.0.0.1:24007/gv1/ganeti/disk1", None),
    ('json:{"driver": "raw", "file": {"driver": "gluster", "volume": "gv0", "path": "ganeti/disk1", '
     '"server.0.host": "10.0.0.1"}}', "userspace"),
    ('json:{"driver": "gluster", "volume": "gv0", "path": "ganeti/disk2"}', None),
    ("json:{broken", None), ("/nonexistent/instance-disks/i:0", None), ("", None), (None, None)])
def test_qmp_block_nodes_are_matched_exactly(filename, access):
    from ganeti_gluster import qmp

    assert qmp._access(filename, qmp.DiskInQemu("gv0", "ganeti/disk1", None)) == access


def test_qmp_matches_a_kernelspace_disk_by_its_device_number(tmp_path):
    from ganeti_gluster import qmp

    null = os.stat("/dev/null").st_rdev
    (tmp_path / "link").symlink_to("/dev/null")
    assert qmp._access(str(tmp_path / "link"), qmp.DiskInQemu("gv0", "ganeti/d", null)) == "kernelspace"
    assert qmp._access("/dev/zero", qmp.DiskInQemu("gv0", "ganeti/d", null)) is None


def test_forget_removes_only_an_open_record_that_exists(tmp_path, monkeypatch):
    # On a replicated volume a removexattr waits for the eager lock of the
    # client writing the image (20 s and more): never one for nothing.
    image = str(tmp_path / "disk")
    open(image, "w").close()
    removed, real = [], open_records.xattr

    def spy(function, path, *args):
        if function is os.removexattr:
            removed.append(args[0])
        return real(function, path, *args)

    monkeypatch.setattr(open_records, "xattr", spy)
    open_records.forget(image, "node1")
    assert removed == []
    open_records.record(image, "node1", True)
    open_records.record(image, "node2", False)
    open_records.forget(image, "node1")
    assert removed == ["user.ganeti-gluster.open.node1"] and list(open_records.read(image)) == ["node2"]
