"""Which GlusterFS servers answer: the one TCP probe every caller uses.

socket is imported only by a probe: its import (selectors, enum) costs 5 ms,
and most scripts never probe.
"""

from .errors import ProviderError

PROBE_TIMEOUT = 3.0


def tcp_probe(host, port, timeout=PROBE_TIMEOUT):
    """None if host:port accepts a TCP connection, else why not."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.timeout:
        return f"did not answer within {timeout:g} s"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()


def probe_all(servers, port):
    """(servers that answer, 'host:port why' of each that does not), in order."""
    up, down = [], []
    for server in servers:
        why = tcp_probe(server, port)
        if why is None:
            up.append(server)
        else:
            down.append(f"{server}:{port} {why}")
    return up, down


def first_reachable(servers, port):
    """The first server that answers; raises naming why each one did not."""
    down = []
    for server in servers:
        why = tcp_probe(server, port)
        if why is None:
            return server
        down.append(f"{server}:{port} {why}")
    raise ProviderError("no GlusterFS server reachable: " + "; ".join(down))
