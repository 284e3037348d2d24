"""Hot reload: watch the operator config file and call back once per burst of edits.

The parent directory is watched, not the file, because editors and ``kubectl`` replace
files by rename; events are filtered to the one path and debounced by watchfiles, so a
save that touches the file several times triggers one reload.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, awatch

log = logging.getLogger("xds_control.watch")

_IDLE_WAKE_MS = 100


def _resolve(path: str | os.PathLike[str]) -> Path:
    return Path(path).resolve()


async def watch_file(
    path: str | os.PathLike[str],
    on_change: Callable[[], object],
    stop: asyncio.Event,
    *,
    debounce_ms: int = 200,
    started: asyncio.Event | None = None,
) -> None:
    """Call ``on_change`` after each debounced burst of changes to ``path`` until ``stop``.

    ``started`` is set once the OS watch is in place; ``on_change`` is called then too,
    so an edit made between the initial load and that moment is not missed.
    """
    target = _resolve(path)
    watching = False

    def is_target(_change: Change, changed: str) -> bool:
        return Path(changed) == target

    try:
        async for changes in awatch(
            target.parent,
            watch_filter=is_target,
            debounce=debounce_ms,
            step=20,
            stop_event=stop,
            recursive=False,
            # Wake every 100 ms when idle: the first wake-up proves the watch is live.
            yield_on_timeout=True,
            rust_timeout=_IDLE_WAKE_MS,
        ):
            if not watching:
                watching = True
                if started is not None:
                    started.set()
            elif not changes:
                continue
            log.debug("config file checked", extra={"fields": {"path": str(target)}})
            on_change()
    except Exception:
        # Serving goes on with the config it has; only hot reload is lost.
        log.exception(
            "config watcher failed; hot reload is off", extra={"fields": {"path": str(target)}}
        )
