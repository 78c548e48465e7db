"""Gradio's memory per visitor, bounded: closed sessions are dropped after a grace period, sessions are capped.

Gradio keeps one ``SessionState`` per session in ``demo.state_holder``: every ``gr.State`` value (the
face shelf, each tab's last result, a faceswap session) and a copy of every component's config. When a
session closes (its heartbeat -- a browser tab, a gradio_client ``Client`` -- goes away) Gradio 6.31
deletes the State values an hour later and keeps the ``SessionState`` itself until 10000 newer sessions
have pushed it out: on a Space where visitors come and go, memory that only grows.

* :class:`SessionReaper` -- every ``FACEGEN_SESSION_SWEEP_EVERY`` s (60) drops each session that is closed
  and was last used more than ``FACEGEN_SESSION_GRACE`` s ago (600; a visitor whose connection blips
  and comes back within that keeps everything): its State values get their delete callbacks (Gradio's
  ``delete_state``), then the whole ``SessionState`` goes.
* :data:`MAX_SESSIONS` (``FACEGEN_MAX_SESSIONS``, 1000) -- ``launch(state_session_capacity=...)``: at most
  that many sessions, open or not; the least recently used one is pushed out first.

It reads Gradio's ``StateHolder`` (``session_data``, ``time_last_used``, ``is_closed``, ``lock``),
pinned by requirements.txt; ``tests/test_memory.py`` checks a closed session's shelf is freed.
"""

from __future__ import annotations

import datetime
import os
from typing import Optional

from facegen.memwatch import Periodic

MAX_SESSIONS = int(os.environ.get("FACEGEN_MAX_SESSIONS", "1000"))
GRACE_S = float(os.environ.get("FACEGEN_SESSION_GRACE", "600"))
EVERY_S = float(os.environ.get("FACEGEN_SESSION_SWEEP_EVERY", "60"))


class SessionReaper(Periodic):
    """Drops `demo`'s closed sessions once they are `grace` seconds past their last use (see the module)."""

    name = "facegen-session-reaper"

    def __init__(self, demo, grace: float = GRACE_S, every: float = EVERY_S):
        super().__init__(every)
        self.demo, self.grace = demo, float(grace)
        self.dropped = 0

    def tick(self) -> None:
        try:
            self.sweep()
        except Exception:          # Gradio's bookkeeping changed under us: try again next time
            pass

    def sweep(self, now: Optional[datetime.datetime] = None) -> list:
        """Drop the closed sessions last used more than `grace` s before `now` -> their session hashes."""
        holder = getattr(self.demo, "state_holder", None)
        if holder is None:             # not launched yet
            return []
        now = now or datetime.datetime.now()
        stale = [sid for sid, state in list(holder.session_data.items())
                 if state.is_closed and (now - holder.time_last_used.get(sid, now)).total_seconds() > self.grace]
        for sid in stale:
            holder.delete_state(sid)                    # the State values' delete callbacks
            with holder.lock:
                holder.session_data.pop(sid, None)
                holder.time_last_used.pop(sid, None)
        self.dropped += len(stale)
        return stale


__all__ = ["SessionReaper", "MAX_SESSIONS", "GRACE_S", "EVERY_S"]
