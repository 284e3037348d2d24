"""Stop sequences over a stream of text pieces, without ever emitting part of a stop string."""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Feed pieces in; get back the text safe to emit. ``stopped`` turns true on a match."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self.stops), default=1) - 1
        self._buffer = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        self._buffer += piece
        hits = [i for i in (self._buffer.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            out, self._buffer = self._buffer[: min(hits)], ""
            return out
        cut = max(0, len(self._buffer) - self._hold)
        out, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return out

    def flush(self) -> str:
        """Whatever was held back, once the stream ends without a match."""
        out, self._buffer = ("" if self.stopped else self._buffer), ""
        return out
