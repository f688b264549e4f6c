"""Where a disk lives, and the gluster URI that names it (the logical ID).

The canonical form is gluster://<host>:<port>/<volume>/<directory>/<name>
with a lower-case host and an explicit port: exactly what Ganeti 3.1 accepts
for userspace access (^gluster://[a-z0-9.-]+:\\d+/[^/]+/.+$).
"""

import os

from . import validate
from .errors import BadInput
from .record import Record

SCHEME = "gluster://"


class Location(Record):
    host: str
    port: int
    volume: str
    directory: str
    name: str

    @property
    def uri(self):
        return f"{SCHEME}{self.host}:{self.port}/{self.volume}/{self.directory}/{self.name}"

    def renamed(self, name):
        return Location(host=self.host, port=self.port, volume=self.volume,
                        directory=self.directory, name=name)

    def image_path(self, mount_point):
        return os.path.join(mount_point, self.directory, self.name)

    @classmethod
    def from_uri(cls, source, uri):
        """Decodes a logical ID; only the canonical form is accepted."""
        validate.text(source, uri)
        parts = uri[len(SCHEME):].split("/") if uri.startswith(SCHEME) else []
        if len(parts) < 4 or ":" not in parts[0]:
            raise BadInput(f"{source} is not a gluster URI of the form "
                           f"gluster://host:port/volume/directory/name: {uri[:80]!r}")
        host, _, port = parts[0].partition(":")
        volume, directory, name = parts[1], "/".join(parts[2:-1]), parts[-1]
        location = cls(host=validate.host(source, host), port=validate.port(source, port),
                       volume=validate.volume(source, volume),
                       directory=validate.directory(source, directory),
                       name=validate.disk_name(source, name))
        if location.uri != uri:
            raise BadInput(f"{source} is not in canonical form; expected {location.uri}")
        return location
