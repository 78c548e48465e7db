"""A hosted studio that stays up for everyone: long-job scheduling, CPU thread budgets, temp-folder sweeps.

No Gradio in here (``demos/common.py`` wires it to the app's events); everything is plain threads.

* :class:`LongJobs` -- long work (faceswap training and conversion, long encoder refinements, large
  animations) waits in one first-in-first-out line for a few *slots* (``FACEGEN_LONG_JOBS``, default 1),
  so it never holds up the short work (generate, mix, fuse, edit), which has its own Gradio queue. A
  visitor (a session) has at most one long job, running or waiting: a second is refused with
  :class:`JobRefused`, whose message names the first job and its place in the line. A job is cancelled
  cooperatively: :meth:`Ticket.check` (called from the job's progress callback, every few training
  steps) raises :class:`JobCancelled` once the job was cancelled -- by :meth:`LongJobs.cancel` or because
  the event that started it is gone (the Stop button, a client's ``job.cancel()``, a closed tab). The
  slot is free at once (the next job may start while the stopped one's thread runs on to that check).
* :func:`intra_op_threads` -- torch's intra-op thread count for the calling thread. ``torch.set_num_threads``
  sets the calling thread's OpenMP / MKL thread counts (thread-local) and the process default that a
  thread starting its first parallel op inherits. So each job sets its own count on entry and puts the
  previous one back on exit; nested budgets take the smaller count. Long jobs get
  :attr:`ThreadBudgets.long` (default: every core but one, shared by the slots), short jobs
  :attr:`ThreadBudgets.short` (the app's choice for its model), so short jobs keep a core. Measured on
  2 shared cores (``bench/thread_budget.py``, A/B interleaved): no latency benefit to short jobs beyond
  the run-to-run spread; kept as a safety bound (a long job never takes every core).
* :class:`TempSweeper` -- deletes the per-request folders under the app's output folder once nothing
  was written in them for ``max_age`` seconds (checked at most every ``every`` seconds, from the
  request that makes a new folder; folders a running job has pinned are kept), so the temp folder
  stays bounded on a long-running Space.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from facegen.engine.errors import FacegenError, InputError


class JobRefused(InputError):
    """A visitor asked for a second long job while one is running or waiting."""


class JobCancelled(FacegenError):
    """The job was stopped (Stop button, client cancel, closed session) before it finished."""


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


# ---------------------------------------------------------------------------
# Thread budgets
# ---------------------------------------------------------------------------

_local = threading.local()
_set_lock = threading.Lock()


@contextmanager
def intra_op_threads(n: int) -> Iterator[int]:
    """Run the body with at most `n` torch intra-op threads in this thread (inside another budget: the
    smaller of the two); the thread's previous count is restored on exit. Other threads keep their own
    counts; the process default that set_num_threads also changes only matters to a thread's first
    parallel op, and every job sets its count on entry anyway. The lock keeps each read-and-set pair
    together when jobs start and end at the same time."""
    outer = getattr(_local, "budget", None)
    n = max(1, int(n))
    if outer is not None:
        n = min(n, outer)
    with _set_lock:
        previous = torch.get_num_threads()
        torch.set_num_threads(n)
    _local.budget = n
    try:
        yield n
    finally:
        _local.budget = outer
        with _set_lock:
            torch.set_num_threads(previous)


@dataclass
class ThreadBudgets:
    """Intra-op threads per job kind. `long`: FACEGEN_LONG_THREADS, else the cores but one, split
    between the long-job slots (at least 1). `short`: set by the app for its model
    (:func:`facegen.studio.cpu_threads`), else every core."""
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    short: int = 0
    long: int = 0

    def for_long(self, slots: int) -> int:
        env = int(os.environ.get("FACEGEN_LONG_THREADS", "0") or 0)
        return self.long or env or max(1, (self.cores - 1) // max(1, slots))

    def for_short(self) -> int:
        return self.short or self.cores


BUDGETS = ThreadBudgets()


# ---------------------------------------------------------------------------
# Long jobs
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class Ticket:
    """One long job: who asked (session), what (kind), where it stands."""
    session: str
    kind: str
    alive: Optional[Callable[[], bool]] = None    # False once the event that asked for it is gone
    state: str = "waiting"                        # waiting -> running -> (stopping) -> done
    enqueued: float = field(default_factory=time.monotonic)
    started: Optional[float] = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def gone(self) -> bool:
        """Cancelled, or its event is gone (then it is marked cancelled)."""
        if not self.cancelled.is_set() and self.alive is not None:
            try:
                if not self.alive():
                    self.cancelled.set()
            except Exception:          # the probe must never break a job
                pass
        return self.cancelled.is_set()

    def check(self) -> None:
        """Raise JobCancelled when the job was cancelled or its event is gone."""
        if self.gone():
            raise JobCancelled(f"The {self.kind} was stopped.")

    def checked(self, progress: Optional[Callable]) -> "CheckedProgress":
        return CheckedProgress(self, progress)


class CheckedProgress:
    """A progress callback that first checks whether its job was cancelled (then raises JobCancelled,
    which ends the job at the next report); other attributes pass through to the wrapped callback."""

    def __init__(self, ticket: Ticket, progress: Optional[Callable]):
        self._ticket, self._progress = ticket, progress

    def __call__(self, *args, **kwargs):
        self._ticket.check()
        if self._progress is not None:
            return self._progress(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._progress, name)


class LongJobs:
    """A first-in-first-out line of long jobs with `slots` running at once and one job per session.

    A cancelled job gives up its slot at once (state 'stopping': the next job may start while its thread
    runs on to its next progress report, where it ends); the line notices a job whose event is gone
    whenever it is looked at (a waiting job polls every `poll` seconds)."""

    def __init__(self, slots: int = 1, budgets: ThreadBudgets = BUDGETS, poll: float = 0.25):
        if slots < 1:
            raise InputError(f"Long-job slots must be at least 1 (got {slots}).")
        self.slots, self.budgets, self.poll = int(slots), budgets, poll
        self._line: list = []                   # tickets in arrival order (running, stopping and waiting)
        self._cond = threading.Condition()

    # -- where things stand (callers hold the lock) ---------------------------------------------
    def _refresh(self) -> None:
        """Running or waiting jobs that were cancelled, or whose event is gone, stop counting."""
        for t in self._line:
            if t.state in ("running", "waiting") and t.gone():
                t.state = "stopping" if t.state == "running" else "cancelled"
                self._cond.notify_all()

    def _live(self, state: str) -> list:
        return [t for t in self._line if t.state == state]

    def _describe(self, t: Ticket) -> str:
        if t.state == "running":
            return f"your {t.kind} is running ({time.monotonic() - t.started:.0f} s so far)"
        waiting, running = self._live("waiting"), len(self._live("running"))
        return (f"your {t.kind} is {ordinal(waiting.index(t) + 1)} in line for a long-job slot ({running} of "
                f"{self.slots} slot{'s' if self.slots > 1 else ''} busy)")

    def _mine(self, session: Optional[str]) -> Optional[Ticket]:
        return next((t for t in self._line if t.session == session and t.state in ("running", "waiting")), None)

    def status(self, session: Optional[str] = None) -> dict:
        """{'slots', 'running': [kinds], 'waiting': n, 'mine': description or None}."""
        with self._cond:
            self._refresh()
            mine = self._mine(session)
            return {"slots": self.slots, "running": [t.kind for t in self._live("running")],
                    "waiting": len(self._live("waiting")), "mine": self._describe(mine) if mine else None}

    # -- the line -------------------------------------------------------------------------------
    def submit(self, session: str, kind: str, alive: Optional[Callable[[], bool]] = None) -> Ticket:
        """Join the line; a session that already has a job in it is refused (JobRefused names it)."""
        with self._cond:
            self._refresh()
            mine = self._mine(session)
            if mine is not None:
                raise JobRefused(f"One long job per visitor at a time: {self._describe(mine)}. Wait for it to "
                                 f"finish or press Stop, then start the {kind}.")
            t = Ticket(session, kind, alive)
            self._line.append(t)
            return t

    def wait(self, t: Ticket, on_wait: Optional[Callable[[int, int], None]] = None) -> None:
        """Block until `t` holds a slot; `on_wait(position, running)` reports each change of place.
        Raises JobCancelled when the job is cancelled while it waits."""
        last = None
        while True:
            with self._cond:
                self._refresh()
                if t.state == "cancelled":
                    raise JobCancelled(f"The {t.kind} was stopped before it started.")
                waiting, running = self._live("waiting"), len(self._live("running"))
                if running < self.slots and waiting[0] is t:
                    t.state, t.started = "running", time.monotonic()
                    return
                place = (waiting.index(t) + 1, running)
                if place == last:
                    self._cond.wait(self.poll)
                    continue
            if on_wait is not None:
                on_wait(*place)
            last = place

    def finish(self, t: Ticket) -> None:
        with self._cond:
            t.state = "done"
            if t in self._line:
                self._line.remove(t)
            self._cond.notify_all()

    def cancel(self, session: str) -> bool:
        """Cancel the session's job: a waiting one leaves the line, a running one gives up its slot now
        and ends at its next check."""
        with self._cond:
            t = self._mine(session)
            if t is None:
                return False
            t.cancelled.set()
            self._refresh()
            return True

    @contextmanager
    def run(self, session: str, kind: str, alive: Optional[Callable[[], bool]] = None,
            on_wait: Optional[Callable[[int, int], None]] = None) -> Iterator[Ticket]:
        """Submit, wait for a slot, then run the body on the long-job thread budget; the slot is freed
        when the body ends, however it ends (or earlier, when the job is cancelled)."""
        t = self.submit(session, kind, alive)
        try:
            self.wait(t, on_wait)
            with intra_op_threads(self.budgets.for_long(self.slots)):
                yield t
        finally:
            self.finish(t)


# ---------------------------------------------------------------------------
# Temp folders
# ---------------------------------------------------------------------------


def folder_bytes(root) -> int:
    """Total size of the files under `root` (0 when it does not exist)."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except OSError:
                pass
    return newest


class TempSweeper:
    """Deletes the subfolders of `root` in which nothing was written for `max_age` seconds; sweeps at
    most every `every` seconds (:meth:`maybe_sweep`, called when a request makes a new folder)."""

    def __init__(self, root, max_age: float, every: float):
        self.root, self.max_age, self.every = Path(root), float(max_age), float(every)
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._pins: dict = {}                # folder -> number of jobs using it

    @contextmanager
    def pinned(self, folder) -> Iterator[None]:
        """Keep `folder` (a subfolder of root) while the body runs, however long ago it was written
        (a faceswap session trains for minutes, then saves its checkpoint there)."""
        key = Path(folder).resolve()
        with self._lock:
            self._pins[key] = self._pins.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._pins[key] -= 1
                if not self._pins[key]:
                    del self._pins[key]

    def sweep(self, now: Optional[float] = None) -> list:
        """Delete the stale subfolders now; -> their paths."""
        now = time.time() if now is None else now
        removed = []
        if not self.root.is_dir():
            return removed
        with self._lock:
            pins = set(self._pins)
        for d in self.root.iterdir():
            try:
                if (d.is_dir() and not d.is_symlink() and d.resolve() not in pins
                        and now - _newest_mtime(d) > self.max_age):
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(d)
            except OSError:          # removed meanwhile by another sweep or request
                continue
        return removed

    def maybe_sweep(self) -> list:
        """Sweep when the last sweep is `every` seconds old (one sweep at a time); -> what was removed."""
        with self._lock:
            if time.monotonic() - self._last < self.every:
                return []
            self._last = time.monotonic()
        return self.sweep()


__all__ = ["LongJobs", "Ticket", "CheckedProgress", "JobRefused", "JobCancelled", "intra_op_threads",
           "ThreadBudgets", "BUDGETS", "TempSweeper", "folder_bytes", "ordinal"]
