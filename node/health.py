"""Change notification for /health/stream: many admission changes in one event-loop
iteration become one wake-up, so subscribers see a coalesced snapshot within ~1 ms."""

from __future__ import annotations

import asyncio


class HealthHub:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Event] = set()
        self._scheduled = False

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._subscribers.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._subscribers.discard(event)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def changed(self) -> None:
        """Schedule one notification for the end of this loop iteration."""
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._notify()
            return
        self._scheduled = True
        loop.call_soon(self._notify)

    def _notify(self) -> None:
        self._scheduled = False
        for event in self._subscribers:
            event.set()
