"""The node's configuration file: a dotenv file of GLUSTER_* settings that
root owns and no one else can write, parsed once per change."""

import os
import stat

from .errors import BadInput

CACHE_DIR = "/run/ganeti-gluster/config-cache"


def read_config_file(path, required):
    """The dotenv file as {KEY: value}; it must be root's and not writable by others."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if required:
            raise BadInput(f"configuration file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise BadInput(f"cannot read configuration file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise BadInput(f"configuration file {path} is not a regular file")
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise BadInput(f"configuration file {path} must be owned by root and writable "
                       "by no one else (it is read by root): chmod 600")
    values = _parsed(path, info)
    result = {}
    for key, value in values.items():
        if not key.startswith("GLUSTER_"):
            raise BadInput(f"{path}: unknown setting {key!r} (settings start with GLUSTER_)")
        if value is None:
            raise BadInput(f"{path}: {key} has no value")
        result[key[len("GLUSTER_"):]] = value
    return result


def _parsed(path, info):
    """The file's KEY=value pairs, parsed by python-dotenv. Importing dotenv
    costs ~20 ms, more than the rest of a warm attach, so the result is kept
    in a root-only cache while the file stays the same."""
    import marshal

    identity = [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    cache = os.path.join(CACHE_DIR, path.replace("%", "%25").replace("/", "%2F"))
    try:
        with open(cache, "rb") as handle:
            stored_identity, values = marshal.load(handle)
        if stored_identity == identity and isinstance(values, dict):
            return values
    except (OSError, EOFError, ValueError, TypeError):
        pass
    from dotenv import dotenv_values

    try:
        values = dict(dotenv_values(path, interpolate=False))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read configuration file {path}: {exc}") from None
    try:
        os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
        temporary = f"{cache}.{os.getpid()}"
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
            marshal.dump([identity, values], handle)
        os.replace(temporary, cache)
    except OSError:
        pass  # a cache we cannot write only costs time
    return values
