"""Typed policy settings from the JSON the host passes to `configure`.

    s = settings.parse(text)
    cooldown = s.int("cooldown-secs", default=300, min=0)
    mode = s.choice("unpriced", ["last", "skip"], default="last")
    windows = [w.str("start") for w in s.tables("windows", default=[])]
    s.done()   # rejects keys nobody read, so a misspelt setting is an error

Errors are `PolicyError`s that name the setting by its path, as the Rust SDK's do:
"setting `windows[0].start`: expected a string, got 8".
"""

import json

from .errors import PolicyError

REQUIRED = object()
"""`default=REQUIRED`: the setting must be given."""


def parse(text: str) -> "Table":
    """Parse settings JSON; empty text counts as `{}`. The top level must be an object."""
    if text is None or not text.strip():
        text = "{}"
    try:
        value = json.loads(text)
    except ValueError as e:
        raise PolicyError(f"settings: {e}") from None
    if not isinstance(value, dict):
        raise PolicyError(f"settings: expected an object, got {_show(value)}")
    return Table(value, "")


def expect_none(text: str) -> None:
    """Accept empty settings only (the default `configure`)."""
    for key in parse(text).value:
        raise PolicyError(f"unknown setting `{key}`: this policy takes no settings")


def _show(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def _join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def fail(path: str, message: str):
    """Raise the error for the setting at `path`."""
    raise PolicyError(f"setting `{path}`: {message}" if path else f"settings: {message}")


# ---- converters: (value, path) -> typed value; also usable as `item=` of list/map ----

def integer(min=None, max=None):
    """An integer (not a bool, not a float) within [min, max]."""
    def convert(v, path):
        if isinstance(v, bool) or not isinstance(v, int):
            fail(path, f"expected an integer, got {_show(v)}")
        if min is not None and v < min:
            fail(path, f"must be at least {min}, got {v}")
        if max is not None and v > max:
            fail(path, f"must be at most {max}, got {v}")
        return v
    return convert


def number(v, path):
    """Any JSON number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        fail(path, f"expected a number, got {_show(v)}")
    return float(v)


def string(v, path):
    """A string."""
    if not isinstance(v, str):
        fail(path, f"expected a string, got {_show(v)}")
    return v


def boolean(v, path):
    """true or false."""
    if not isinstance(v, bool):
        fail(path, f"expected true or false, got {_show(v)}")
    return v


def one_of(options):
    """One of the given strings."""
    def convert(v, path):
        if v not in options:
            fail(path, f"expected one of {', '.join(options)}, got {_show(v)}")
        return v
    return convert


class Table:
    """A JSON object of settings; each getter marks its key as read."""

    def __init__(self, value: dict, path: str):
        self.value = value
        self.path = path
        self._read = set()

    def get(self, key: str, convert, default=REQUIRED):
        """The setting `key` through `convert`, or `default` when absent (null counts as
        absent)."""
        self._read.add(key)
        v = self.value.get(key)
        if v is None:
            if default is REQUIRED:
                fail(self.path, f"missing field `{key}`")
            return default
        return convert(v, _join(self.path, key))

    def int(self, key, default=REQUIRED, min=None, max=None):
        return self.get(key, integer(min, max), default)

    def number(self, key, default=REQUIRED):
        return self.get(key, number, default)

    def str(self, key, default=REQUIRED):
        return self.get(key, string, default)

    def bool(self, key, default=REQUIRED):
        return self.get(key, boolean, default)

    def choice(self, key, options, default=REQUIRED):
        return self.get(key, one_of(options), default)

    def list(self, key, item, default=REQUIRED):
        """A list whose items go through `item`."""
        def convert(v, path):
            if not isinstance(v, list):
                fail(path, f"expected a list, got {_show(v)}")
            return [item(x, _join(path, i)) for i, x in enumerate(v)]
        return self.get(key, convert, default)

    def map(self, key, item, default=REQUIRED):
        """An object of any keys whose values go through `item`."""
        def convert(v, path):
            if not isinstance(v, dict):
                fail(path, f"expected a table, got {_show(v)}")
            return {k: item(x, _join(path, k)) for k, x in v.items()}
        return self.get(key, convert, default)

    def tables(self, key, default=REQUIRED):
        """A list of tables, each a `Table` to read (and `done()`) in turn."""
        def convert(v, path):
            if not isinstance(v, list):
                fail(path, f"expected a list, got {_show(v)}")
            out = []
            for i, x in enumerate(v):
                if not isinstance(x, dict):
                    fail(_join(path, i), f"expected a table, got {_show(x)}")
                out.append(Table(x, _join(path, i)))
            return out
        return self.get(key, convert, default)

    def done(self):
        """Fail on the first key no getter read: a typo is an error, not a default."""
        for key in self.value:
            if key not in self._read:
                known = ", ".join(f"`{k}`" for k in sorted(self._read))
                fail(self.path, f"unknown field `{key}`, expected one of {known}" if known
                     else f"unknown field `{key}`")
