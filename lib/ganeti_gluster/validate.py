"""Strict checks of every value that comes from outside: one clear reason each.

Each checker takes the name of the variable or setting it came from, so the
error names what the operator has to fix.
"""

import re

from .errors import BadInput

MAX_VALUE_LENGTH = 1024
# 1 PiB: far beyond any real disk, small enough that a typo is caught.
MAX_SIZE_MIB = 1 << 30

_HOST_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(\.{_HOST_LABEL})*")
_IPV4 = re.compile(r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
_VOLUME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}")
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}")
_DISK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}")
_POOL = re.compile(r"[A-Za-z0-9_]{1,64}")
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_METADATA = re.compile(r"[-A-Za-z0-9_+.=:,@/ ]{0,1024}")


def text(source, value):
    """Any value: printable, no NUL, bounded; returns it unchanged."""
    if len(value) > MAX_VALUE_LENGTH:
        raise BadInput(f"{source} is too long ({len(value)} characters, at most {MAX_VALUE_LENGTH})")
    if not value.isprintable():
        raise BadInput(f"{source} contains control or non-printable characters")
    return value


def _show(value):
    return repr(value if len(value) <= 60 else value[:57] + "...")


def size_mib(source, value):
    """A size in MiB, as Ganeti writes it: a positive decimal integer."""
    text(source, value)
    if not re.fullmatch(r"[0-9]{1,12}", value):
        raise BadInput(f"{source} must be a whole number of MiB, not {_show(value)}")
    size = int(value)
    if size <= 0:
        raise BadInput(f"{source} must be at least 1 MiB, not {value}")
    if size > MAX_SIZE_MIB:
        raise BadInput(f"{source} is {size} MiB, more than the limit of {MAX_SIZE_MIB} MiB")
    return size


def host(source, value):
    """A server: a DNS name or IPv4 address, returned lower-case.

    IPv6 and transports are refused because Ganeti 3.1 only accepts
    gluster://<lower-case host or IPv4>:<port>/... URIs.
    """
    text(source, value)
    lowered = value.strip().lower()
    if len(lowered) > 253 or not (_IPV4.fullmatch(lowered) or _HOSTNAME.fullmatch(lowered)):
        raise BadInput(f"{source} has an invalid server name {_show(value)} "
                       "(expected a host name or IPv4 address)")
    if re.fullmatch(r"[0-9.]+", lowered) and not _IPV4.fullmatch(lowered):
        raise BadInput(f"{source} has an invalid IPv4 address {_show(value)}")
    return lowered


def hosts(source, value):
    """A comma-separated list of servers, de-duplicated, order kept."""
    text(source, value)
    result = []
    for item in value.split(","):
        if not item.strip():
            raise BadInput(f"{source} has an empty server name in {_show(value)}")
        name = host(source, item)
        if name not in result:
            result.append(name)
    return tuple(result)


def port(source, value):
    text(source, value)
    if not re.fullmatch(r"[0-9]{1,5}", value) or not 1 <= int(value) <= 65535:
        raise BadInput(f"{source} must be a TCP port number (1-65535), not {_show(value)}")
    return int(value)


def volume(source, value):
    text(source, value)
    if not _VOLUME.fullmatch(value):
        raise BadInput(f"{source} is not a valid GlusterFS volume name: {_show(value)} "
                       "(letters, digits, '_' and '-', at most 128)")
    return value


def directory(source, value):
    """A directory inside the volume: relative, no '.' or '..' segments."""
    text(source, value)
    segments = value.strip("/").split("/")
    if not value.strip("/") or any(not _SEGMENT.fullmatch(s) or s in (".", "..") for s in segments):
        raise BadInput(f"{source} is not a valid directory inside the volume: {_show(value)} "
                       "(segments of letters, digits, '.', '_', '+', '-'; no '..')")
    return "/".join(segments)


def disk_name(source, value):
    """A disk (image file) name: one path segment, never hidden or special."""
    text(source, value)
    if not _DISK_NAME.fullmatch(value) or value in (".", ".."):
        raise BadInput(f"{source} is not a valid disk name: {_show(value)} "
                       "(letters, digits, '.', '_', '+', '-'; no '/'; at most 200)")
    return value


def pool(source, value):
    text(source, value)
    if not _POOL.fullmatch(value):
        raise BadInput(f"{source} is not a valid pool name: {_show(value)} "
                       "(letters, digits and '_')")
    return value.lower()


def node(source, value):
    text(source, value)
    if not _NODE.fullmatch(value):
        raise BadInput(f"{source} is not a valid node name: {_show(value)}")
    return value.lower()


def metadata(source, value):
    text(source, value)
    if not _METADATA.fullmatch(value):
        raise BadInput(f"{source} has characters outside [-A-Za-z0-9_+.=:,@/ ] or is over 1024 long")
    return value


def choice(source, value, allowed):
    text(source, value)
    if value not in allowed:
        raise BadInput(f"{source} must be one of {', '.join(allowed)}, not {_show(value)}")
    return value


_TRUE = ("1", "yes", "true", "on")
_FALSE = ("0", "no", "false", "off", "")


def boolean(source, value):
    text(source, value)
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadInput(f"{source} must be yes or no, not {_show(value)}")


def positive_number(source, value, maximum):
    text(source, value)
    try:
        number = float(value)
    except ValueError:
        raise BadInput(f"{source} must be a number, not {_show(value)}") from None
    if not 0 < number <= maximum:
        raise BadInput(f"{source} must be above 0 and at most {maximum:g}, not {_show(value)}")
    return number


def absolute_path(source, value):
    text(source, value)
    if not value.startswith("/") or "/../" in value + "/" or "\n" in value:
        raise BadInput(f"{source} must be an absolute path without '..', not {_show(value)}")
    return value.rstrip("/") or "/"
