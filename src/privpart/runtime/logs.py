"""The servers' log: one line per event, rate limited, never a traceback for a client's error.

Clients see generic error bodies; the detail goes here. Whatever a client sends (junk HTTP,
bad frames, failing requests by the thousand) costs at most `burst` lines at once and `rate`
lines a second after that, each at most `max_chars` long; a line says how many were dropped
before it. aiohttp's own request errors ("Error handling request", which it logs with a full
traceback) come through the same logger (`runner.start_site` hands it to aiohttp).

Imports nothing from the runtime: the enclave worker uses it too.
"""

from __future__ import annotations

import logging
import threading
import time

LOGGER_NAME = "privpart.server"


class OneLineRateLimit(logging.Filter):
    """A token bucket in front of a logger that also folds each record into one short line."""

    def __init__(self, rate: float = 1.0, burst: int = 10, max_chars: int = 300) -> None:
        super().__init__()
        self.rate, self.burst, self.max_chars = rate, burst, max_chars
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self.dropped = 0  # dropped since the last line that got through
        self.dropped_total = 0

    def _take(self) -> int | None:
        """Dropped-before count if a line may go out now, else None."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1.0:
                self.dropped += 1
                self.dropped_total += 1
                return None
            self._tokens -= 1.0
            before, self.dropped = self.dropped, 0
            return before

    def filter(self, record: logging.LogRecord) -> bool:
        before = self._take()
        if before is None:
            return False
        text = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            text += f": {type(exc).__name__}: {exc}"
        text = " ".join(text.split())  # one line, whatever the message held
        if len(text) > self.max_chars:
            text = text[: self.max_chars - 3] + "..."
        if before:
            text += f" ({before} earlier lines dropped by the log rate limit)"
        record.msg, record.args = text, None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def server_log() -> logging.Logger:
    """The servers' logger, with its one-line rate limit installed once."""
    log = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, OneLineRateLimit) for f in log.filters):
        log.addFilter(OneLineRateLimit())
    return log


def rate_limit(log: logging.Logger) -> OneLineRateLimit:
    """The rate limit installed on `log` (tests read what it dropped)."""
    return next(f for f in log.filters if isinstance(f, OneLineRateLimit))
