"""Which optional parts of the `scale` snapshot a policy reads (`Policy.reads`).

Turning records into Python objects is most of what a Python `scale` costs, so the host sends
only the parts a policy declares (`host.declare-reads`, called after `configure`). A part left
out arrives as a `NotSent` marker that fails loudly when used, instead of an empty list that
would silently look like "no nodes" or "no offerings".
"""

import dataclasses

from ._wit import host
from .errors import PolicyError

PARTS = ("nodes", "queued-items", "offerings")
"""The optional parts, by their WIT names."""

_FLAGS = {"nodes": "NODES", "queued-items": "QUEUED_ITEMS", "offerings": "OFFERINGS"}


def checked(reads):
    """The declared parts as a frozenset, or PolicyError naming an unknown one."""
    if isinstance(reads, str):
        reads = (reads,)
    parts = frozenset(reads)
    unknown = sorted(parts.difference(PARTS))
    if unknown:
        raise PolicyError(f"`reads`: unknown part `{unknown[0]}`; the parts are "
                          + ", ".join(PARTS))
    return parts


def flags(parts):
    """The WIT `snapshot-parts` flags for a set of part names."""
    f = host.SnapshotParts(0)
    for p in parts:
        f |= getattr(host.SnapshotParts, _FLAGS[p])
    return f


class NotSent:
    """Stands for a part of the snapshot the policy did not declare: any use raises."""

    __slots__ = ("_what", "_part")

    def __init__(self, what, part):
        self._what, self._part = what, part

    def _refuse(self, *_args, **_kwargs):
        raise PolicyError(f"{self._what} was not sent: add \"{self._part}\" to the policy's "
                          "`reads` to receive it")

    __iter__ = __len__ = __getitem__ = __bool__ = __contains__ = _refuse

    def __repr__(self):
        return f"NotSent({self._what})"


def mark(snapshot, parts):
    """Replaces, in place, the parts not in `parts` with `NotSent` markers; returns it."""
    if "nodes" not in parts:
        snapshot.nodes = NotSent("snapshot.nodes", "nodes")
    if "offerings" not in parts:
        snapshot.offerings = NotSent("snapshot.offerings", "offerings")
    if "queued-items" not in parts:
        for d in snapshot.demand:
            d.items = NotSent("demand.items", "queued-items")
    return snapshot


def trimmed(snapshot, parts):
    """A copy of `snapshot` as the host sends it to a policy that reads `parts` (the test
    harness uses it, so unit tests see what the component will see)."""
    copy = dataclasses.replace(
        snapshot, demand=[dataclasses.replace(d) for d in snapshot.demand])
    return mark(copy, parts)
