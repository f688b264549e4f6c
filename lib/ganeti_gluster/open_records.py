"""Open records: which node holds a disk open, how, and from where.

Ganeti's open and close scripts say that this node uses a disk, exclusively
or shared; the record is an xattr of the image, user.ganeti-gluster.open.NODE
= "<exclusive|shared> <since> <address>", so every node sees every other's.
The address is the one the node's GlusterFS clients connect from: what
`gluster volume status VOL clients` lists and auth.reject cuts off. Records
written before addresses were recorded have none (address None).
"""

import errno
import os
import time

from .fuse_worker import isolated
from .images import XATTR_PREFIX, xattr
from .record import Record

OPEN_XATTR_PREFIX = XATTR_PREFIX + "open."


class OpenRecord(Record):
    mode: str        # "exclusive" or "shared"
    since: str
    address: str = None

    @property
    def exclusive(self):
        return self.mode == "exclusive"

    def describe(self):
        return f"{self.mode} since {self.since or '?'}, from {self.address or 'an unrecorded address'}"


_ADDRESS_CHARS = frozenset("0123456789abcdefABCDEF.:")


def parse(value):
    """The record of an xattr's text; the volume is not trusted, so an
    address that cannot be one is taken as unrecorded."""
    mode, since, address = (value.split() + ["", "", ""])[:3]
    if not (address and len(address) <= 45 and set(address) <= _ADDRESS_CHARS):
        address = None
    return OpenRecord(mode, since[:40], address)


@isolated("reading the open records of")
def read_raw(path):
    """{node: the record's text} for every node that recorded an open."""
    records = {}
    for name in xattr(os.listxattr, path):
        if name.startswith(OPEN_XATTR_PREFIX):
            try:
                value = xattr(os.getxattr, path, name)
            except OSError:
                continue  # removed meanwhile
            records[name[len(OPEN_XATTR_PREFIX):]] = value.decode(errors="replace")
    return records


def read(path):
    """{node: OpenRecord} for every node that recorded an open."""
    return {node: parse(value) for node, value in read_raw(path).items()}


@isolated("recording an open of")
def record(path, node, exclusive, address=None):
    value = f"{'exclusive' if exclusive else 'shared'} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
    xattr(os.setxattr, path, OPEN_XATTR_PREFIX + node, f"{value} {address}".encode() if address else value.encode())


@isolated("forgetting an open of")
def forget(path, node):
    """Removes this node's record, if there is one. Looked up first: on a
    replicated volume a removexattr, even of a missing name, waits for the
    eager lock of the client writing the image, which another node's running
    VM holds for 20 s and more (a migration source's detach took 55 s); a
    getxattr takes no lock."""
    name = OPEN_XATTR_PREFIX + node
    try:
        xattr(os.getxattr, path, name)
        xattr(os.removexattr, path, name)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOENT):
            raise
