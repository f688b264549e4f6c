"""Bad input, generated: at least 1000 environments per script, each made
invalid on purpose (path traversal, NUL bytes, overlong values, bad sizes,
malformed logical IDs, mount-option injection through EXTP values, missing
and unknown variables, both dialects mixed). Every one must exit non-zero
with exactly one line on stderr and no traceback, print nothing on stdout,
and create, change or leak nothing.

The scripts run in-process through ganeti_gluster.main.main with the real
command runner (a subprocess per case would take many minutes); a sample of
cases also runs as real processes.
"""

import contextlib
import io
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "lib"))
from support import CONFIG, MOUNT_BASE, PROVIDER, harness  # noqa: E402

from ganeti_gluster.main import main  # noqa: E402

EXAMPLES = int(os.environ.get("BAD_INPUT_EXAMPLES", "1000"))
LID = "gluster://127.0.0.1:24007/gv0/ganeti/prop-base-disk0"
VALID = {
    "create": {"VOL_NAME": "prop-base.ext.disk0", "VOL_SIZE": "8"},
    "attach": {"VOL_NAME": "prop-base.ext.disk0"},
    "detach": {"VOL_NAME": "prop-base.ext.disk0"},
    "remove": {"VOL_NAME": "prop-base.ext.disk0"},
    "grow": {"VOL_NAME": "prop-base.ext.disk0", "VOL_SIZE": "8", "VOL_NEW_SIZE": "16"},
    "setinfo": {"VOL_NAME": "prop-base.ext.disk0", "VOL_METADATA": "originstname+x"},
    "verify": {},
    "open": {"VOL_NAME": "prop-base.ext.disk0", "VOL_OPEN_EXCLUSIVE": "True"},
    "close": {"VOL_NAME": "prop-base.ext.disk0"},
    "snapshot": {"VOL_NAME": "prop-base.ext.disk0", "VOL_SNAPSHOT_NAME": "prop-base.ext.disk0.snap"},
    "resize": {"LOGICAL_ID": LID, "DISK_SIZE": "16"},
    "rename": {"LOGICAL_ID": LID, "NEW_INSTANCE_NAME": "other.example.com"},
}
CREATING = ("create", "snapshot")
DESIGN_CREATE = {"INSTANCE_NAME": "prop.example.com", "DISK_INDEX": "0", "DISK_SIZE": "8"}
SIZE_VARIABLES = ("VOL_SIZE", "VOL_NEW_SIZE", "DISK_SIZE", "VOL_SNAPSHOT_SIZE")
NAME_VARIABLES = ("VOL_NAME", "VOL_SNAPSHOT_NAME")
REQUIRED = {
    "create": ("VOL_NAME", "VOL_SIZE"), "attach": ("VOL_NAME",), "detach": ("VOL_NAME",),
    "remove": ("VOL_NAME",), "grow": ("VOL_NAME", "VOL_NEW_SIZE"),
    "setinfo": ("VOL_NAME", "VOL_METADATA"), "open": ("VOL_NAME", "VOL_OPEN_EXCLUSIVE"),
    "close": ("VOL_NAME",), "snapshot": ("VOL_NAME", "VOL_SNAPSHOT_NAME"),
    "resize": ("LOGICAL_ID", "DISK_SIZE"), "rename": ("LOGICAL_ID", "NEW_INSTANCE_NAME"),
}

# -- what makes an environment bad --------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
bad_names = st.one_of(
    st.builds(lambda a, b: f"{a}/{b}", text, text),
    st.builds(lambda a: f"../{a}", text),
    st.sampled_from(["", ".", "..", ".hidden", " ", "a b", "-rf", "name\n", "x\x00y", "ü"]),
    st.builds(lambda a: "\x00" + a, text),
    st.integers(201, 3000).map(lambda n: "a" * n),
)
bad_sizes = st.one_of(
    st.sampled_from(["", "0", "-1", "-5", "1.5", "1e3", " 8", "8 ", "+8", "0x10", "８", "8M",
                     "NaN", "inf", "\x008", "9" * 13]),
    st.integers(max_value=0).map(str),
    st.integers(min_value=(1 << 30) + 1, max_value=1 << 80).map(str),
    text.filter(lambda t: not (t.isascii() and t.isdigit())),
)
bad_logical_ids = st.one_of(
    text.filter(lambda t: not t.startswith("gluster://")),
    st.sampled_from([
        "gluster://127.0.0.1/gv0/ganeti/x", "gluster://127.0.0.1:24007/gv0/x",
        "gluster://127.0.0.1:24007/gv0/../x", "gluster://127.0.0.1:24007//ganeti/x",
        "gluster://EXAMPLE.com:24007/gv0/ganeti/x", "gluster://127.0.0.1:024007/gv0/ganeti/x",
        "gluster://127.0.0.1:99999/gv0/ganeti/x", "gluster://[::1]:24007/gv0/ganeti/x",
        "gluster+tcp://127.0.0.1:24007/gv0/ganeti/x", "gluster://127.0.0.1:24007/gv0/ganeti/x/",
        "gluster://127.0.0.1:24007/gv0/ganeti/.x", "gluster://127.0.0.1:24007/g v0/ganeti/x",
    ]),
    st.builds(lambda t: f"gluster://127.0.0.1:24007/gv0/ganeti/{t}/..", text),
)
injections = st.one_of(
    st.tuples(st.just("EXTP_SERVERS"), st.one_of(
        st.builds(lambda a, b: f"{a},{b}=x", st.sampled_from(["a", "127.0.0.1"]),
                  st.sampled_from(["backup-volfile-servers", "log-file", "volfile-id"])),
        st.sampled_from(["host;id", "host name", "a,,b", "-o", "h:24007", "::1", "1.2.3.256",
                         "a_b", "a..b", "$(id)", "`id`", "a\nb", ""]))),
    st.tuples(st.just("EXTP_VOLUME"), st.sampled_from(
        ["gv0,log-file=/x", "gv0/../x", "-gv0", "", "g v", "gv0\x00", "a" * 129, "gv0;id"])),
    st.tuples(st.just("EXTP_PORT"), st.sampled_from(["0", "65536", "-1", "24007,x", "port", "", " 1"])),
    st.tuples(st.just("EXTP_DIR"), st.sampled_from(["..", "a/../b", "", "/", "a//b", ".x", "a b"])),
    st.tuples(st.just("EXTP_PREALLOCATION"), st.sampled_from(["thick", "", "FULL", "sparse,full"])),
    st.tuples(st.just("EXTP_POOL"), st.sampled_from(["undefined", "a-b", "", "../x", "p" * 65])),
    st.tuples(st.just("EXTP_ACCESS"), st.sampled_from(["both", "", "kernel"])),
)
unknown_parameters = st.from_regex(r"EXTP_[A-Z][A-Z0-9_-]{0,20}", fullmatch=True).filter(
    lambda n: n[5:].lower() not in ("servers", "port", "volume", "dir", "preallocation", "pool",
                                    "provider", "access"))
unknown_settings = st.from_regex(r"GLUSTER_[A-Z]{1,12}", fullmatch=True).filter(
    lambda n: n[8:].lower() not in ("servers", "port", "volume", "dir", "preallocation", "pool",
                                    "mount_base", "debug", "config", "userspace", "node_name"))


def mutations(action, base):
    """Strategies of one change that makes `base`, a valid environment for
    `action`, invalid."""
    design = "LOGICAL_ID" in base or "INSTANCE_NAME" in base
    choices = [
        st.tuples(st.just("set"), injections),
        st.tuples(st.just("set"), st.tuples(unknown_settings, st.just("1"))),
        st.tuples(st.just("set"), st.tuples(
            st.sampled_from(["VOL_NAME", "VOL_SIZE"] if design
                            else ["LOGICAL_ID", "INSTANCE_NAME", "POOL", "DISK_INDEX"]),
            st.just("x"))),  # the other dialect's variable: mixed dialects
        st.tuples(st.just("set"), st.tuples(
            st.sampled_from(sorted(base) or ["VOL_NAME"]),
            st.integers(1025, 5000).map(lambda n: "7" * n))),  # overlong
    ]
    if action in CREATING:  # the others only warn: a parameter added later must not stop them
        choices.append(st.tuples(st.just("set"), st.tuples(unknown_parameters, st.just("1"))))
    names = [v for v in NAME_VARIABLES + ("INSTANCE_NAME", "NEW_INSTANCE_NAME") if v in base]
    if names:
        choices.append(st.tuples(st.just("set"), st.tuples(st.sampled_from(names), bad_names)))
    sizes = [v for v in SIZE_VARIABLES if v in base]
    if sizes:
        choices.append(st.tuples(st.just("set"), st.tuples(st.sampled_from(sizes), bad_sizes)))
    if "LOGICAL_ID" in base:
        choices.append(st.tuples(st.just("set"), st.tuples(st.just("LOGICAL_ID"), bad_logical_ids)))
    required = DESIGN_CREATE if base is DESIGN_CREATE else REQUIRED.get(action)
    if required:
        choices.append(st.tuples(st.just("drop"), st.sampled_from(sorted(required))))
    if action == "open":
        choices.append(st.tuples(st.just("set"), st.tuples(
            st.just("VOL_OPEN_EXCLUSIVE"), st.sampled_from(["true", "1", "yes", "", "TRUE", "False "]))))
    return st.one_of(choices)


def bad_environments(action):
    bases = [VALID[action], DESIGN_CREATE] if action == "create" else [VALID[action]]

    def apply(env, changes):
        env = dict(env)
        for kind, change in changes:
            if kind == "drop":
                env.pop(change, None)
            else:
                env[change[0]] = change[1]
        return env

    return st.one_of([st.builds(apply, st.just(base), st.lists(mutations(action, base), min_size=1,
                                                              max_size=3)) for base in bases])


# -- nothing may change ---------------------------------------------------------

def world():
    """What a bad input must not change: images, mounts, loop devices."""
    images = []
    for volume in sorted(os.listdir(MOUNT_BASE)) if os.path.isdir(MOUNT_BASE) else []:
        directory = os.path.join(MOUNT_BASE, volume, "ganeti")
        if os.path.ismount(os.path.join(MOUNT_BASE, volume)) and os.path.isdir(directory):
            images += [(volume, n, os.stat(os.path.join(directory, n)).st_size)
                       for n in sorted(os.listdir(directory))]
    with open("/proc/self/mountinfo") as handle:
        mounts = sorted(line.split()[4] for line in handle if "glusterfs" in line)
    loops = sorted(n for n in os.listdir("/sys/block")
                   if n.startswith("loop") and os.path.exists(f"/sys/block/{n}/loop/backing_file"))
    return images, mounts, loops


@pytest.fixture(scope="module")
def environment():
    harness("up")
    # Keep gv0 mounted during the run so that images are visible to world().
    keeper = {"VOL_NAME": "prop-keeper.ext.disk0"}
    call("create", {**keeper, "VOL_SIZE": "8"})
    assert call("attach", keeper)[0] == 0
    before = world()
    yield before
    after = world()
    call("detach", keeper)
    call("remove", keeper)
    assert after == before


def call(action, env):
    environ = {"PATH": "/usr/bin:/bin", "GLUSTER_CONFIG": CONFIG, **env}
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(action, [], environ=environ, stdout=stdout)
    return code, stdout.getvalue(), stderr.getvalue()


def check_refused(action, env):
    code, out, err = call(action, env)
    assert code != 0, f"{action} accepted {env!r}"
    assert out == "", f"{action} printed {out!r} for {env!r}"
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"gluster {action}: error: "), \
        f"{action}: not one line for {env!r}: {err!r}"


@pytest.mark.parametrize("action", sorted(VALID))
def test_generated_bad_environments_are_refused_cleanly(environment, action):
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(bad_environments(action))
    def property(env):
        check_refused(action, env)

    property()
    assert world() == environment


@pytest.mark.parametrize("action", ["detach", "remove", "close"])
def test_releasing_scripts_warn_about_unknown_parameters_and_go_on(environment, action):
    @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(unknown_parameters, text.filter(lambda t: "\x00" not in t))
    def property(name, value):
        code, out, err = call(action, {**VALID[action], name: value})
        assert code == 0 and out == "", err  # the disk does not exist: already released
        warnings = [line for line in err.splitlines() if "unknown disk parameter" in line]
        assert len(warnings) == 1 and f"{name[5:].lower()!r}" in warnings[0], err
        assert warnings[0].endswith("ignored") and ": error: " not in err

    property()
    assert world() == environment


@pytest.mark.parametrize("action", sorted(VALID))
def test_a_sample_of_bad_environments_is_refused_by_the_real_executables(environment, action):
    @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(bad_environments(action).filter(
        lambda env: all("\x00" not in k + v for k, v in env.items())))
    def property(env):
        result = subprocess.run([os.path.join(PROVIDER, action)], capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin", "GLUSTER_CONFIG": CONFIG, **env},
                                timeout=60)
        assert result.returncode != 0 and result.stdout == ""
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr

    property()
