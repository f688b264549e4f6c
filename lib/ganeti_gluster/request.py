"""The environment of one script run -> one validated request.

Two dialects reach the same operations:
- Ganeti's ExtStorage interface (2.7+): VOL_* and EXTP_* variables;
- the 2011 design document (doc/design-shared-storage.rst): INSTANCE_NAME,
  LOGICAL_ID, POOL, DISK_SIZE, NEW_INSTANCE_NAME, ...
Everything is checked here, before anything is touched.
"""

from . import validate
from .errors import BadInput
from .location import Location
from .record import Record

GANETI = "ganeti"
DESIGN = "design"

GANETI_ACTIONS = ("create", "attach", "detach", "remove", "grow", "setinfo",
                  "verify", "open", "close", "snapshot")
DESIGN_ACTIONS = ("create", "resize", "rename", "remove", "attach", "detach")
ACTIONS = tuple(dict.fromkeys(GANETI_ACTIONS + DESIGN_ACTIONS))

GANETI_VARIABLES = ("VOL_NAME", "VOL_SIZE", "VOL_NEW_SIZE", "VOL_METADATA", "VOL_UUID",
                    "VOL_CNAME", "VOL_OPEN_EXCLUSIVE", "VOL_SNAPSHOT_NAME", "VOL_SNAPSHOT_SIZE")
DESIGN_VARIABLES = ("INSTANCE_NAME", "INSTANCE_UUID", "INSTANCE_TAGS", "DISK_INDEX",
                    "LOGICAL_ID", "POOL", "DISK_SIZE", "NEW_INSTANCE_NAME")

# Variables each action needs, by dialect.
REQUIRED = {
    (GANETI, "create"): ("VOL_NAME", "VOL_SIZE"),
    (GANETI, "grow"): ("VOL_NAME", "VOL_NEW_SIZE"),
    (GANETI, "setinfo"): ("VOL_NAME", "VOL_METADATA"),
    (GANETI, "open"): ("VOL_NAME", "VOL_OPEN_EXCLUSIVE"),
    (GANETI, "snapshot"): ("VOL_NAME", "VOL_SNAPSHOT_NAME"),
    (GANETI, "verify"): (),
    (DESIGN, "create"): ("INSTANCE_NAME", "DISK_INDEX", "DISK_SIZE"),
    (DESIGN, "resize"): ("LOGICAL_ID", "DISK_SIZE"),
    (DESIGN, "rename"): ("LOGICAL_ID", "NEW_INSTANCE_NAME"),
}
DEFAULT_REQUIRED = {GANETI: ("VOL_NAME",), DESIGN: ("LOGICAL_ID",)}
# Free text for Ganeti (any disk name a user typed): only ever logged, never checked.
UNCHECKED_VARIABLES = ("VOL_UUID", "VOL_CNAME")
# Scripts that make a disk are strict about unknown disk parameters; the rest
# only warn, since a parameter added later (gnt-instance modify) must not stop
# an attach, and a failed attach during gnt-instance remove leaks the disk.
CREATING_ACTIONS = ("create", "snapshot")


class Request(Record):
    action: str
    dialect: str
    name: str = None               # the disk (image file) name
    size_mib: int = None           # create: the new disk's size
    new_size_mib: int = None       # grow / resize: the target size
    metadata: str = None
    open_exclusive: bool = None
    snapshot_name: str = None
    logical_id: Location = None    # design dialect, all but create
    instance_name: str = None
    disk_index: int = None
    pool: str = None
    new_instance_name: str = None
    params: dict = None            # EXTP_* values by lower-case name


def dialect_of(action, environ):
    ganeti = [v for v in GANETI_VARIABLES if v in environ]
    design = [v for v in DESIGN_VARIABLES if v in environ]
    if ganeti and design:
        raise BadInput(f"both interface dialects given ({ganeti[0]} and {design[0]}); "
                       "use VOL_* (Ganeti) or INSTANCE_NAME/LOGICAL_ID (design document), not both")
    if action not in DESIGN_ACTIONS:
        if design:
            raise BadInput(f"{action} belongs to Ganeti's interface and takes VOL_* variables, "
                           f"not {design[0]}")
        return GANETI
    if action not in GANETI_ACTIONS:
        if ganeti:
            raise BadInput(f"{action} belongs to the design-document interface and takes "
                           f"LOGICAL_ID/INSTANCE_NAME/..., not {ganeti[0]}")
        return DESIGN
    if design:
        return DESIGN
    return GANETI


def _extp_params(environ):
    return {key[len("EXTP_"):].lower(): value for key, value in environ.items()
            if key.startswith("EXTP_")}


def parse(action, environ):
    """Builds the request for `action` from `environ`, or raises BadInput."""
    if action not in ACTIONS:
        raise BadInput(f"unknown action {action!r}; this provider implements {', '.join(ACTIONS)}")
    dialect = dialect_of(action, environ)
    for variable in REQUIRED.get((dialect, action), DEFAULT_REQUIRED[dialect]):
        if not environ.get(variable):
            raise BadInput(f"{action} needs {variable} in the environment")
    for variable in GANETI_VARIABLES + DESIGN_VARIABLES:
        if variable in environ and variable not in UNCHECKED_VARIABLES:
            validate.text(variable, environ[variable])

    get = environ.get
    values = {"action": action, "dialect": dialect, "params": _extp_params(environ)}
    if dialect == GANETI:
        if "VOL_NAME" in environ:
            values["name"] = validate.disk_name("VOL_NAME", get("VOL_NAME"))
        if "VOL_SIZE" in environ:
            values["size_mib"] = validate.size_mib("VOL_SIZE", get("VOL_SIZE"))
        if "VOL_NEW_SIZE" in environ:
            values["new_size_mib"] = validate.size_mib("VOL_NEW_SIZE", get("VOL_NEW_SIZE"))
        if "VOL_METADATA" in environ:
            values["metadata"] = validate.metadata("VOL_METADATA", get("VOL_METADATA"))
        if "VOL_OPEN_EXCLUSIVE" in environ:
            values["open_exclusive"] = _ganeti_bool("VOL_OPEN_EXCLUSIVE", get("VOL_OPEN_EXCLUSIVE"))
        if "VOL_SNAPSHOT_NAME" in environ:
            values["snapshot_name"] = validate.disk_name("VOL_SNAPSHOT_NAME", get("VOL_SNAPSHOT_NAME"))
            if values["snapshot_name"] == values.get("name"):
                raise BadInput("VOL_SNAPSHOT_NAME must differ from VOL_NAME")
        if "VOL_SNAPSHOT_SIZE" in environ:
            validate.size_mib("VOL_SNAPSHOT_SIZE", get("VOL_SNAPSHOT_SIZE"))
    else:
        if "LOGICAL_ID" in environ and action != "create":
            values["logical_id"] = Location.from_uri("LOGICAL_ID", get("LOGICAL_ID"))
            values["name"] = values["logical_id"].name
        if "INSTANCE_NAME" in environ:
            values["instance_name"] = validate.host("INSTANCE_NAME", get("INSTANCE_NAME"))
        if "NEW_INSTANCE_NAME" in environ:
            values["new_instance_name"] = validate.host("NEW_INSTANCE_NAME", get("NEW_INSTANCE_NAME"))
        if "DISK_INDEX" in environ:
            values["disk_index"] = _disk_index(get("DISK_INDEX"))
        if "DISK_SIZE" in environ:
            size = validate.size_mib("DISK_SIZE", get("DISK_SIZE"))
            values["size_mib" if action == "create" else "new_size_mib"] = size
        if get("POOL"):
            values["pool"] = validate.pool("POOL", get("POOL"))
        if "INSTANCE_UUID" in environ:
            validate.metadata("INSTANCE_UUID", get("INSTANCE_UUID"))
        if action == "create":
            values["name"] = design_disk_name(values["instance_name"], values["disk_index"])
    return Request(**values)


def design_disk_name(instance_name, disk_index):
    """The design dialect binds a disk's file name to its instance, so that
    rename has something to rename: <instance name>-disk<index>."""
    return validate.disk_name("INSTANCE_NAME", f"{instance_name}-disk{disk_index}")


def _ganeti_bool(source, value):
    if value not in ("True", "False"):
        raise BadInput(f"{source} must be True or False, not {value[:20]!r}")
    return value == "True"


def _disk_index(value):
    if not value.isascii() or not value.isdigit() or len(value) > 3:
        raise BadInput(f"DISK_INDEX must be a small non-negative integer, not {value[:20]!r}")
    return int(value)
