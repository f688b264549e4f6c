"""A small immutable record type.

dataclasses would do, but importing it pulls in `inspect` and costs about
8 ms on every script run; attach runs constantly, so this stays tiny.
"""


class Record:
    """Fields are the class annotations; a class attribute gives a default."""

    def __init__(self, *args, **values):
        if len(args) > len(self.__annotations__):
            raise TypeError(f"{type(self).__name__} takes at most {len(self.__annotations__)} values")
        values.update(zip(self.__annotations__, args))
        for name in self.__annotations__:
            if name in values:
                value = values.pop(name)
            elif hasattr(type(self), name):
                value = getattr(type(self), name)
            else:
                raise TypeError(f"{type(self).__name__} needs {name}")
            object.__setattr__(self, name, value)
        if values:
            raise TypeError(f"{type(self).__name__} has no field {next(iter(values))}")

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self):
        return tuple(getattr(self, name) for name in self.__annotations__)

    def __eq__(self, other):
        return type(other) is type(self) and other._values() == self._values()

    def __hash__(self):
        return hash(self._values())

    def __repr__(self):
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__annotations__)
        return f"{type(self).__name__}({fields})"
