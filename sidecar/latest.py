"""The latest node state and a change signal: readers always get the newest state, so a
slow consumer (a stalled control plane) coalesces changes instead of queueing them."""

from __future__ import annotations

import asyncio

from sidecar.node_state import NodeState


class Latest:
    def __init__(self, name: str | None = None) -> None:
        # Until the node first answers it is neither up nor known: report it down.
        self.state = NodeState(up=False, name=name)
        self.version = 0
        # Set once the node was read or found unreachable: only then is there news to send.
        self.settled = asyncio.Event()
        self._changed = asyncio.Event()

    def update(self, state: NodeState) -> bool:
        """Store ``state``; returns True (and wakes waiters) when it differs from the last."""
        self.settled.set()
        changed = state != self.state
        self.state = state
        if changed:
            self.version += 1
            self._changed.set()
            self._changed = asyncio.Event()
        return changed

    async def wait_newer(self, version: int, within_s: float | None) -> bool:
        """Wait until the version passes ``version``; False when ``within_s`` ran out first."""
        if self.version > version:
            return True
        try:
            await asyncio.wait_for(self._changed.wait(), within_s)
        except TimeoutError:
            return False
        return True
