"""Settings for one disk: EXTP_* > named pool > GLUSTER_* env > dotenv file > defaults.

Disk settings can be given per disk (`--disk 0:volume=gv0,...` reaches us as
EXTP_VOLUME), in a named pool, or node-wide. Node settings (where to mount,
how long to wait, ...) are never taken from per-disk parameters: those come
from whoever may modify an instance, not from the node's administrator.

A pool is a named bundle of disk settings defined node-wide, for example
GLUSTER_POOL_FAST_VOLUME=gv1; a disk picks it with pool=fast (EXTP_POOL),
or the design dialect's POOL variable.
"""

import os

from . import loopdev, validate
from .config_file import read_config_file
from .errors import BadInput
from .record import Record

DEFAULT_CONFIG_PATH = "/etc/ganeti/extstorage/gluster.env"
DEFAULT_CALL_LOG = "/var/log/ganeti/extstorage/gluster-calls.log"
CONFIG_PATH_VARIABLE = "GLUSTER_CONFIG"
PREALLOCATION_MODES = ("sparse", "falloc", "full")
USERSPACE_MODES = ("auto", "always", "never")

# name -> (checker, default); None as default means "must be set somewhere".
DISK_SETTINGS = {
    "servers": (validate.hosts, None),
    "port": (validate.port, "24007"),
    "volume": (validate.volume, None),
    "dir": (validate.directory, "ganeti"),
    "preallocation": (lambda s, v: validate.choice(s, v, PREALLOCATION_MODES), "sparse"),
}
NODE_SETTINGS = {
    "mount_base": (validate.absolute_path, "/run/ganeti-gluster"),
    "mount_timeout": (lambda s, v: validate.positive_number(s, v, 3600), "60"),
    "lock_timeout": (lambda s, v: validate.positive_number(s, v, 3600), "300"),
    "command_timeout": (lambda s, v: validate.positive_number(s, v, 3600), "30"),
    "io_timeout": (lambda s, v: validate.positive_number(s, v, 3600), "60"),
    "allowed_servers": (lambda s, v: v and validate.server_list(s, v), ""),
    "strict_open": (validate.boolean, "no"),
    "keep_mounted": (validate.boolean, "no"),
    "unmount_delay": (lambda s, v: validate.seconds_or_zero(s, v, 600), "10"),
    "allow_strict_o_direct_off": (validate.boolean, "no"),
    "fuzzy_snapshots": (validate.boolean, "no"),
    "userspace": (lambda s, v: validate.choice(s, v, USERSPACE_MODES), "auto"),
    "node_name": (validate.node, None),
    "min_free_percent": (lambda s, v: validate.positive_number(s, v, 100), "5"),
    "debug": (validate.boolean, "no"),
    "call_log": (lambda s, v: v and validate.absolute_path(s, v), DEFAULT_CALL_LOG),
    "join_brick": (lambda s, v: v and validate.absolute_path(s, v), ""),
    "join_rebalance": (validate.boolean, "no"),
    "glusterd_socket": (lambda s, v: v and validate.absolute_path(s, v), ""),
    "pool": (validate.pool, None),
    # The kernel path's tuning: the glusterfs client that provider starts and
    # the loop device it sets up. packaging/gluster.env.example says why
    # each default is what it is.
    "fuse_reader_threads": (lambda s, v: validate.whole_number(s, v, 1, 64), "1"),
    "fuse_attribute_timeout": (lambda s, v: validate.seconds_or_zero(s, v, 60), "1"),
    "fuse_entry_timeout": (lambda s, v: validate.seconds_or_zero(s, v, 60), "1"),
    "fuse_negative_timeout": (lambda s, v: validate.seconds_or_zero(s, v, 60), "0"),
    "client_event_threads": (lambda s, v: v and validate.whole_number(s, v, 1, 32), ""),
    "client_io_threads": (lambda s, v: v and validate.whole_number(s, v, 1, 64), ""),
    "loop_sector_size": (lambda s, v: int(validate.choice(s, v, loopdev.SECTOR_SIZES)), "512"),
    "loop_queue": (lambda s, v: validate.assignments(s, v, loopdev.QUEUE_ATTRIBUTES), ""),
}
# Per-disk parameters Ganeti passes besides ours.
GANETI_PARAMETERS = {
    "provider": lambda s, v: validate.text(s, v),
    "access": lambda s, v: validate.choice(s, v, ("kernelspace", "userspace")),
}
PARAMETER_DESCRIPTIONS = {
    "servers": "GlusterFS servers, comma-separated; the first is the primary, the rest are backup volfile servers",
    "port": "glusterd port of the servers (default 24007)",
    "volume": "GlusterFS volume holding the disk images",
    "dir": "directory inside the volume for the disk images (default ganeti)",
    "preallocation": "sparse (default), falloc or full",
    "pool": "a named pool of settings defined in the node's configuration file",
}


def _is_pool_key(key):
    """POOL_<NAME>_<DISK SETTING>, e.g. POOL_FAST_VOLUME."""
    if not key.startswith("POOL_"):
        return False
    name, _, setting = key[len("POOL_"):].rpartition("_")
    if setting.lower() not in DISK_SETTINGS or not name:
        return False
    try:
        validate.pool(key, name)
    except BadInput:
        return False
    return True


class Settings(Record):
    servers: tuple
    port: int
    volume: str
    dir: str
    preallocation: str
    pool: str
    mount_base: str
    mount_timeout: float
    lock_timeout: float
    command_timeout: float
    io_timeout: float
    allowed_servers: tuple     # (host, port or None) a disk may name besides the configured ones
    node_servers: tuple        # GLUSTER_SERVERS and GLUSTER_PORT: the node's own cluster
    node_port: int
    configured_servers: frozenset  # (host, port) of the node's servers and every pool's
    strict_open: bool
    keep_mounted: bool
    unmount_delay: float
    allow_strict_o_direct_off: bool
    fuzzy_snapshots: bool
    userspace: str
    node_name: str
    min_free_percent: float
    debug: bool
    call_log: str
    join_brick: str
    join_rebalance: bool
    glusterd_socket: str
    fuse_reader_threads: int
    fuse_attribute_timeout: float
    fuse_entry_timeout: float
    fuse_negative_timeout: float
    client_event_threads: int  # or "": the volume's client.event-threads
    client_io_threads: int     # or "": the volume's performance.io-thread-count
    loop_sector_size: int
    loop_queue: tuple          # (attribute of /sys/block/loopN/queue, value)
    config_path: str

    def check_allowed(self, hosts, port):
        """A disk may make this node's glusterfs client talk only to servers
        the node's configuration names: those of the node and its pools, and
        any listed in GLUSTER_ALLOWED_SERVERS."""
        allowed = self.configured_servers | {
            (h, p if p is not None else self.node_port) for h, p in self.allowed_servers or ()}
        for host in hosts:
            if (host, port) not in allowed:
                raise BadInput(f"server {host}:{port} is not allowed on this node: a disk may name "
                               f"only the servers configured in {self.config_path} (GLUSTER_SERVERS, "
                               "GLUSTER_POOL_*_SERVERS) or listed in GLUSTER_ALLOWED_SERVERS")

    def require(self, name):
        """A disk setting that has no default: its value, or how to set it."""
        value = getattr(self, name)
        if value is None:
            raise BadInput(f"no {name} configured: set {name}=... on the disk, or "
                           f"GLUSTER_{name.upper()} in {self.config_path}")
        return value


class _Layer:
    """One source of settings: a mapping from KEY to value, and its name."""

    def __init__(self, values, describe):
        self.values = values
        self.describe = describe

    def get(self, key):
        if key in self.values:
            return self.values[key], self.describe(key)
        return None


def _check_known(keys, describe):
    for key in keys:
        lowered = key.lower()
        if lowered in DISK_SETTINGS or lowered in NODE_SETTINGS or _is_pool_key(key):
            continue
        known = ", ".join(sorted(k.upper() for k in (*DISK_SETTINGS, *NODE_SETTINGS)))
        raise BadInput(f"unknown setting {describe(key)} (known: {known}, POOL_<NAME>_<SETTING>)")


def check_parameters(params, strict=True):
    """EXTP_* parameters: valid values of known names, or a clear error. An
    unknown name is an error when strict, else a warning; either way it is
    dropped. Returns the known ones."""
    known = {}
    for name, value in params.items():
        source = f"EXTP_{name.upper()}"
        if name in GANETI_PARAMETERS:
            GANETI_PARAMETERS[name](source, value)
        elif name in DISK_SETTINGS:
            DISK_SETTINGS[name][0](source, value)
        elif name == "pool":
            validate.pool(source, value)
        else:
            names = ", ".join(sorted((*DISK_SETTINGS, "pool", *GANETI_PARAMETERS)))
            message = f"unknown disk parameter {name!r} ({source[:60]}); known: {names}"
            if strict:
                raise BadInput(message)
            from . import diag

            diag.warn(message + "; ignored")
            continue
        known[name] = value
    return known


def _configured_servers(node_layers, node_servers, node_port):
    """(host, port) of the node's servers and of every pool's servers."""
    found = {(host, node_port) for host in node_servers or ()}
    values = {}
    for layer in reversed(node_layers):  # the first layer wins
        values.update(layer.values)
    pools = {key[len("POOL_"):-len("_SERVERS")] for key in values
             if _is_pool_key(key) and key.endswith("_SERVERS")}
    for name in pools:
        port = values.get(f"POOL_{name}_PORT")
        port = validate.port(f"GLUSTER_POOL_{name}_PORT", port) if port else node_port
        found |= {(host, port) for host in validate.hosts(f"GLUSTER_POOL_{name}_SERVERS",
                                                          values[f"POOL_{name}_SERVERS"])}
    return frozenset(found)


def load(params, environ, pool=None, strict=True):
    """Resolves every setting for one disk. `params` are the EXTP_* values
    (lower-case names); `pool` is the design dialect's POOL, if any; strict:
    unknown parameters are errors, not warnings."""
    params = check_parameters(params, strict)
    env_values = {k[len("GLUSTER_"):]: v for k, v in environ.items()
                  if k.startswith("GLUSTER_") and k != CONFIG_PATH_VARIABLE}
    _check_known(env_values, lambda k: f"GLUSTER_{k} in the environment")

    path = environ.get(CONFIG_PATH_VARIABLE)
    if path is not None:
        validate.absolute_path(CONFIG_PATH_VARIABLE, path)
    file_values = read_config_file(path or DEFAULT_CONFIG_PATH, required=path is not None)
    config_path = path or DEFAULT_CONFIG_PATH
    _check_known(file_values, lambda k: f"GLUSTER_{k} in {config_path}")

    env_layer = _Layer(env_values, lambda k: f"GLUSTER_{k}")
    file_layer = _Layer(file_values, lambda k: f"GLUSTER_{k} in {config_path}")
    node_layers = [env_layer, file_layer]

    def first(layers, key):
        for layer in layers:
            found = layer.get(key)
            if found is not None:
                return found
        return None

    resolved = {}
    for name, (check, default) in NODE_SETTINGS.items():
        found = first(node_layers, name.upper())
        if found is None:
            value, source = default, f"the default {name}"
        else:
            value, source = found
        resolved[name] = check(source, value) if value is not None else None

    chosen_pool = resolved["pool"]
    if pool is not None:
        chosen_pool = validate.pool("POOL", pool)
    if "pool" in params:
        chosen_pool = validate.pool("EXTP_POOL", params["pool"])
    resolved["pool"] = chosen_pool

    disk_layers = [_Layer({k.upper(): v for k, v in params.items()}, lambda k: f"EXTP_{k}")]
    if chosen_pool:
        prefix = f"POOL_{chosen_pool.upper()}_"
        pool_layers = [_Layer({k[len(prefix):]: v for k, v in layer.values.items()
                               if k.upper().startswith(prefix)}, lambda k, l=layer: l.describe(prefix + k))
                       for layer in node_layers]
        if not any(layer.values for layer in pool_layers):
            raise BadInput(f"pool {chosen_pool!r} is not defined (no GLUSTER_{prefix}* settings "
                           f"in the environment or {config_path})")
        disk_layers += pool_layers
    disk_layers += node_layers

    for name, (check, default) in DISK_SETTINGS.items():
        found = first(disk_layers, name.upper())
        if found is None:
            value, source = default, f"the default {name}"
        else:
            value, source = found
        resolved[name] = check(source, value) if value is not None else None

    node_servers = first(node_layers, "SERVERS")
    resolved["node_servers"] = validate.hosts(node_servers[1], node_servers[0]) if node_servers else None
    node_port = first(node_layers, "PORT")
    resolved["node_port"] = validate.port(node_port[1], node_port[0]) if node_port else \
        int(DISK_SETTINGS["port"][1])
    resolved["configured_servers"] = _configured_servers(node_layers, resolved["node_servers"],
                                                         resolved["node_port"])
    if resolved["node_name"] is None:
        resolved["node_name"] = validate.node("the host name", os.uname().nodename)
    return Settings(config_path=config_path, **resolved)
