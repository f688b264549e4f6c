"""Which GlusterFS servers answer: the one TCP probe every caller uses.

socket is imported only by a probe: its import (selectors, enum) costs 5 ms,
and most scripts never probe.
"""

from .errors import ProviderError

PROBE_TIMEOUT = 3.0


def _connect(host, port, timeout):
    """(None, our address on that connection) if host:port accepts a TCP
    connection, else (why not, None)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            return None, connection.getsockname()[0]
    except socket.timeout:
        return f"did not answer within {timeout:g} s", None
    except OSError as exc:
        return (exc.strerror or str(exc)).lower(), None


def tcp_probe(host, port, timeout=PROBE_TIMEOUT):
    """None if host:port accepts a TCP connection, else why not."""
    return _connect(host, port, timeout)[0]


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
    return first_reachable_from(servers, port)[0]


def first_reachable_from(servers, port):
    """(the first server that answers, this node's address on the connection
    to it): the address GlusterFS sees this node's clients come from (where
    routes to the bricks leave by the same interface)."""
    down = []
    for server in servers:
        why, local = _connect(server, port, PROBE_TIMEOUT)
        if why is None:
            return server, local
        down.append(f"{server}:{port} {why}")
    raise ProviderError("no GlusterFS server reachable: " + "; ".join(down))


def addresses_of(runner, name, timeout):
    """The addresses a host name resolves to (an address is its own), within
    `timeout` (the resolver itself has no bound: getent runs through the
    runner); [] if it does not resolve."""
    if is_address(name):
        return [name]
    result = runner.run(["getent", "ahosts", name], timeout=timeout, check=False)
    found = []
    for line in result.stdout.splitlines():
        address = line.split()[0] if line.split() else ""
        if is_address(address) and address not in found:
            found.append(address)
    return found


def is_address(text):
    import ipaddress

    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
