"""Which VOEvent was last issued for each object, so that a new alert on it can cite that one (Citations)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Protocol


class History(Protocol):
    """Which VOEvent was last issued for an object, so a new alert on it can cite that one.

    Implemented in memory here (:class:`MemoryHistory`) and over the alert DB by the store
    (``gateway.store.history``). Called for every alert, in arrival order: ``previous`` must be quick.
    """

    def previous(self, object_key: str) -> Optional[str]:
        """The IVORN of the latest VOEvent issued for ``object_key``, or None."""

    def remember(self, object_key: str, ivorn: str) -> None:
        """Record ``ivorn`` as the latest VOEvent issued for ``object_key``."""


class MemoryHistory:
    """:class:`History` in memory, bounded: the least recently used objects are forgotten first."""

    def __init__(self, max_objects: int = 100_000):
        self.max_objects = max_objects
        self._latest: OrderedDict[str, str] = OrderedDict()

    def previous(self, object_key: str) -> Optional[str]:
        ivorn = self._latest.get(object_key)
        if ivorn is not None:
            self._latest.move_to_end(object_key)
        return ivorn

    def remember(self, object_key: str, ivorn: str) -> None:
        self._latest[object_key] = ivorn
        self._latest.move_to_end(object_key)
        if len(self._latest) > self.max_objects:
            self._latest.popitem(last=False)

    def __len__(self) -> int:
        return len(self._latest)
