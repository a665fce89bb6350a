"""A one-frame mailbox between the subscription callback and the inference thread."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")


class LatestFrameSlot(Generic[ItemT]):
    """Holds only the newest item: a put over an unread item replaces it and counts a drop.

    The consumer therefore always works on the freshest frame and a slow estimator never builds
    a backlog, whatever the camera rate.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item: ItemT | None = None
        self._closed = False
        self.dropped = 0

    def put(self, item: ItemT) -> None:
        with self._condition:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._condition.notify()

    def take(self) -> ItemT | None:
        """Wait for an item; None once the slot is closed."""
        with self._condition:
            while self._item is None and not self._closed:
                self._condition.wait()
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
