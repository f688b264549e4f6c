"""Where a disk lives, and the gluster URI that names it (the logical ID).

The canonical form is gluster://<host>:<port>/<volume>/<directory>/<name>
with a lower-case host and an explicit port: exactly what Ganeti 3.1 accepts
for userspace access (^gluster://[a-z0-9.-]+:\\d+/[^/]+/.+$).
"""

import os
import re
from dataclasses import dataclass

from . import validate
from .errors import BadInput

_URI = re.compile(r"gluster://([^/:]+):([^/]+)/([^/]+)/(.+)/([^/]+)")


@dataclass(frozen=True)
class Location:
    host: str
    port: int
    volume: str
    directory: str
    name: str

    @property
    def uri(self):
        return f"gluster://{self.host}:{self.port}/{self.volume}/{self.directory}/{self.name}"

    def renamed(self, name):
        return Location(self.host, self.port, self.volume, self.directory, name)

    def image_path(self, mount_point):
        return os.path.join(mount_point, self.directory, self.name)

    @classmethod
    def from_uri(cls, source, uri):
        """Decodes a logical ID; only the canonical form is accepted."""
        validate.text(source, uri)
        match = _URI.fullmatch(uri)
        if not match:
            raise BadInput(f"{source} is not a gluster URI of the form "
                           f"gluster://host:port/volume/directory/name: {uri[:80]!r}")
        host, port, volume, directory, name = match.groups()
        location = cls(validate.host(source, host), validate.port(source, port),
                       validate.volume(source, volume), validate.directory(source, directory),
                       validate.disk_name(source, name))
        if location.uri != uri:
            raise BadInput(f"{source} is not in canonical form; expected {location.uri}")
        return location
