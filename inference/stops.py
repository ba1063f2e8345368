"""Stop strings: end the answer where one appears, without ever streaming any of it.

A stop string can arrive split over several deltas ("<|" then "end|>"), so any tail of the
text that could be the start of a stop string is held back until the next delta decides it.
"""

from __future__ import annotations

from collections.abc import Iterable


class StopMatcher:
    def __init__(self, stops: Iterable[str]):
        self._stops = tuple(stop for stop in stops if stop)
        self._held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Return the text that is safe to send, and whether a stop string was found.

        After a match the text is cut just before the stop string and the rest is dropped.
        """
        buffer = self._held + text
        found = [i for i in (buffer.find(stop) for stop in self._stops) if i >= 0]
        if found:
            self._held = ""
            return buffer[: min(found)], True
        keep = self._longest_partial_stop(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """The held-back text, when generation ended for another reason."""
        held, self._held = self._held, ""
        return held

    def _longest_partial_stop(self, buffer: str) -> int:
        longest = max((len(stop) for stop in self._stops), default=1) - 1
        for size in range(min(longest, len(buffer)), 0, -1):
            tail = buffer[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0
