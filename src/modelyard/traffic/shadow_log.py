"""Rate-limited warnings for failing shadows.

A shadow that fails on every request must not flood the log: per shadow (``model@version``)
the first failure is logged at once, then at most one line per ``every_s`` saying how many more
failed since the last line, with the last error's message. The count of failures since the last
line is logged with the next failure after ``every_s`` (every failure is also counted in the
shadow's error metrics and serving stats).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from modelyard.core.clock import Clock

#: At most one warning per shadow per this many seconds.
DEFAULT_EVERY_S = 60.0


@dataclass(slots=True)
class _State:
    logged_at: float
    more: int = 0  # failures since the last line
    last: str = ""  # the last of those failures' message


class ShadowErrorLog:
    """Logs shadow failures at warning, rate-limited per shadow (see the module docstring)."""

    def __init__(
        self, log: logging.Logger, clock: Clock, *, every_s: float = DEFAULT_EVERY_S
    ) -> None:
        self.log = log
        self.every_s = every_s
        self._clock = clock
        self._states: dict[str, _State] = {}

    def failed(self, shadow: str, endpoint: str, message: str) -> None:
        """One failure of ``shadow`` (``model@version``) copied from ``endpoint``."""
        now = self._clock.monotonic()
        state = self._states.get(shadow)
        if state is None or (state.more == 0 and now - state.logged_at >= self.every_s):
            self._states[shadow] = _State(logged_at=now)  # the first failure in a while
            self.log.warning("shadow %s of endpoint %s failed: %s", shadow, endpoint, message)
            return
        state.more += 1
        state.last = message
        if now - state.logged_at < self.every_s:
            return
        self.log.warning(
            "shadow %s of endpoint %s: %d more failed in the last %.0f s (last: %s)",
            shadow,
            endpoint,
            state.more,
            now - state.logged_at,
            state.last,
        )
        state.logged_at, state.more, state.last = now, 0, ""
