"""Strict checks of every value that comes from outside: one clear reason each.

Each checker takes the name of the variable or setting it came from, so the
error names what the operator has to fix.
"""

from .errors import BadInput

MAX_VALUE_LENGTH = 1024
# 1 PiB: far beyond any real disk, small enough that a typo is caught.
MAX_SIZE_MIB = 1 << 30

# Character classes instead of regular expressions: importing `re` alone
# costs several milliseconds, and attach runs constantly.
_DIGITS = frozenset("0123456789")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_WORD = _ALNUM | {"_"}
_VOLUME_CHARS = _WORD | {"-"}
_NAME_CHARS = _WORD | set(".+-")
_NODE_CHARS = _ALNUM | set("._-")
_METADATA_CHARS = _ALNUM | set("-_+.=:,@/ ")


def _made_of(value, first, rest, longest):
    """value is 1..longest characters, the first from `first`, the others from `rest`."""
    return (0 < len(value) <= longest and value[0] in first
            and all(c in rest for c in value[1:]))


def _is_number(value, longest):
    return 0 < len(value) <= longest and all(c in _DIGITS for c in value)


def _is_ipv4(value):
    parts = value.split(".")
    return len(parts) == 4 and all(
        _is_number(p, 3) and int(p) <= 255 and (p == "0" or p[0] != "0") for p in parts)


def _is_hostname(value):
    labels = value.split(".")
    return len(value) <= 253 and all(
        _made_of(label, _LOWER_ALNUM, _LOWER_ALNUM | {"-"}, 63) and label[-1] != "-"
        for label in labels)


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
    if not _is_number(value, 12):
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
    if not (_is_ipv4(lowered) or _is_hostname(lowered)):
        raise BadInput(f"{source} has an invalid server name {_show(value)} "
                       "(expected a host name or IPv4 address)")
    if all(c in _DIGITS or c == "." for c in lowered) and not _is_ipv4(lowered):
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


def server_list(source, value):
    """host[:port],... -> ((host, port or None), ...)."""
    text(source, value)
    result = []
    for item in value.split(","):
        name, sep, number = item.strip().partition(":")
        result.append((host(source, name), port(source, number) if sep else None))
    return tuple(result)


def port(source, value):
    text(source, value)
    if not _is_number(value, 5) or not 1 <= int(value) <= 65535:
        raise BadInput(f"{source} must be a TCP port number (1-65535), not {_show(value)}")
    return int(value)


def volume(source, value):
    text(source, value)
    if not _made_of(value, _WORD, _VOLUME_CHARS, 128):
        raise BadInput(f"{source} is not a valid GlusterFS volume name: {_show(value)} "
                       "(letters, digits, '_' and '-', at most 128)")
    return value


def directory(source, value):
    """A directory inside the volume: relative, no '.' or '..' segments."""
    text(source, value)
    segments = value.strip("/").split("/")
    if not value.strip("/") or any(not _made_of(s, _WORD, _NAME_CHARS, 200) for s in segments):
        raise BadInput(f"{source} is not a valid directory inside the volume: {_show(value)} "
                       "(segments of letters, digits, '.', '_', '+', '-'; no '..')")
    return "/".join(segments)


def disk_name(source, value):
    """A disk (image file) name: one path segment, never hidden or special."""
    text(source, value)
    if not _made_of(value, _WORD, _NAME_CHARS, 200):
        raise BadInput(f"{source} is not a valid disk name: {_show(value)} "
                       "(letters, digits, '.', '_', '+', '-'; no '/'; at most 200)")
    return value


def pool(source, value):
    text(source, value)
    if not _made_of(value, _WORD, _WORD, 64):
        raise BadInput(f"{source} is not a valid pool name: {_show(value)} "
                       "(letters, digits and '_')")
    return value.lower()


def node(source, value):
    text(source, value)
    if not _made_of(value, _ALNUM, _NODE_CHARS, 200):
        raise BadInput(f"{source} is not a valid node name: {_show(value)}")
    return value.lower()


def metadata(source, value):
    text(source, value)
    if len(value) > 1024 or not all(c in _METADATA_CHARS for c in value):
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
    number = _number(source, value)
    if not 0 < number <= maximum:
        raise BadInput(f"{source} must be above 0 and at most {maximum:g}, not {_show(value)}")
    return number


def seconds_or_zero(source, value, maximum):
    number = _number(source, value)
    if not 0 <= number <= maximum:
        raise BadInput(f"{source} must be 0 or more and at most {maximum:g}, not {_show(value)}")
    return number


def assignments(source, value, names):
    """Space-separated NAME=VALUE pairs, NAME one of `names`, VALUE a word;
    returns them as a tuple of (name, value)."""
    text(source, value)
    pairs = []
    for item in value.split():
        name, equals, setting = item.partition("=")
        if not equals or name not in names or not _made_of(setting, _VOLUME_CHARS, _VOLUME_CHARS, 32):
            raise BadInput(f"{source} must be NAME=VALUE pairs with NAME one of {', '.join(names)}, "
                           f"not {_show(item)}")
        pairs.append((name, setting))
    return tuple(pairs)


def whole_number(source, value, minimum, maximum):
    text(source, value)
    if not _is_number(value, 10) or not minimum <= int(value) <= maximum:
        raise BadInput(f"{source} must be a whole number from {minimum} to {maximum}, not {_show(value)}")
    return int(value)


def _number(source, value):
    text(source, value)
    try:
        number = float(value)
    except ValueError:
        raise BadInput(f"{source} must be a number, not {_show(value)}") from None
    return number  # NaN fails every range check of the callers


def absolute_path(source, value):
    text(source, value)
    if not value.startswith("/") or "/../" in value + "/" or "\n" in value:
        raise BadInput(f"{source} must be an absolute path without '..', not {_show(value)}")
    return value.rstrip("/") or "/"
