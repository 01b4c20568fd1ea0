"""Voices kept for one browser session, in server memory only, to calibrate to that speaker.

A page load asks for a random session id (``POST /api/session``); each recording it sends
with that id adds the statistics of its voice features (per encoder layer and channel, the
mean and spread of the frozen encoder's output; never the audio) to the session.  Nothing is written to disk.  A session is dropped after ``ttl`` seconds without a
request, by ``DELETE /api/session/<id>`` (the page's "forget my voice" button), and the
least recently used one goes first when ``max_sessions`` are held.  Each session keeps at
most ``max_recordings`` recordings (the newest).  A recording's statistics take ~15 KB
(tiny.en: 2 x 5 layers x 384 channels, float32), so the defaults bound the store at ~150 MB.

>>> store = VoiceSessions(ttl=60.0)
>>> sid = store.new()
>>> store.add(sid, "features of one recording")
1
>>> store.recordings(sid), store.forget(sid), store.recordings(sid)
(['features of one recording'], True, [])
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["VoiceSessions", "SESSION_ID"]

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")  # what new() makes: 32 url-safe characters


@dataclass
class _Session:
    seen: float
    recordings: list[Any] = field(default_factory=list)


class VoiceSessions:
    """Thread-safe, in-memory, expiring store of per-session recordings' features."""

    def __init__(
        self,
        *,
        ttl: float = 30 * 60.0,
        max_sessions: int = 500,
        max_recordings: int = 20,
        clock=time.monotonic,
    ) -> None:
        if ttl <= 0 or max_sessions < 1 or max_recordings < 1:
            raise ValueError("ttl, max_sessions and max_recordings must be positive")
        self.ttl, self.max_sessions, self.max_recordings = ttl, max_sessions, max_recordings
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self._sessions:
            sid, s = next(iter(self._sessions.items()))
            if now - s.seen <= self.ttl and len(self._sessions) <= self.max_sessions:
                break
            del self._sessions[sid]

    def _get(self, sid: str, now: float) -> _Session:
        if not SESSION_ID.match(sid or ""):
            raise KeyError("a session id is 22-64 letters, digits, '-' or '_'")
        s = self._sessions.get(sid)
        if s is None or now - s.seen > self.ttl:
            s = _Session(seen=now)
        self._sessions[sid] = s
        self._sessions.move_to_end(sid)
        s.seen = now
        return s

    def new(self) -> str:
        """A fresh random session id (unguessable: 192 bits)."""
        sid = secrets.token_urlsafe(24)
        with self._lock:
            now = self._clock()
            self._get(sid, now)
            self._expire(now)
        return sid

    def add(self, sid: str, features: Any) -> int:
        """Keep one recording's ``features`` in session ``sid``; returns how many it holds.
        An unknown or expired id starts an empty session under that id."""
        with self._lock:
            now = self._clock()
            s = self._get(sid, now)
            s.recordings.append(features)
            del s.recordings[: -self.max_recordings]
            self._expire(now)
            return len(s.recordings)

    def recordings(self, sid: str) -> list[Any]:
        """The session's recordings, oldest first (a copy of the list); [] if none."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            s = self._sessions.get(sid)
            if s is None:
                return []
            s.seen = now
            self._sessions.move_to_end(sid)
            return list(s.recordings)

    def forget(self, sid: str) -> bool:
        """Drop session ``sid``; whether it held anything."""
        with self._lock:
            s = self._sessions.pop(sid, None)
            return bool(s and s.recordings)

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._sessions)
