"""Open records: which node holds a disk open, and how.

Ganeti's open and close scripts say that this node uses a disk, exclusively
or shared; the record is an xattr of the image, user.ganeti-gluster.open.NODE
= "<exclusive|shared> <since>", so every node sees every other's.
"""

import errno
import os
import time

from .fuse_worker import isolated
from .images import XATTR_PREFIX, xattr

OPEN_XATTR_PREFIX = XATTR_PREFIX + "open."


@isolated("reading the open records of")
def read(path):
    """{node: (mode, since)} for every node that recorded an open."""
    records = {}
    for name in xattr(os.listxattr, path):
        if name.startswith(OPEN_XATTR_PREFIX):
            try:
                value = xattr(os.getxattr, path, name)
            except OSError:
                continue  # removed meanwhile
            mode, _, since = value.decode(errors="replace").partition(" ")
            records[name[len(OPEN_XATTR_PREFIX):]] = (mode, since)
    return records


@isolated("recording an open of")
def record(path, node, exclusive):
    value = f"{'exclusive' if exclusive else 'shared'} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
    xattr(os.setxattr, path, OPEN_XATTR_PREFIX + node, value.encode())


@isolated("forgetting an open of")
def forget(path, node):
    try:
        xattr(os.removexattr, path, OPEN_XATTR_PREFIX + node)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOENT):
            raise
