"""Memory of a long-running server: where RSS goes (a diagnosis tool) and handing freed heap back to the OS.

No Gradio in here; ``app.py`` starts both from the environment.

* :class:`MemWatch` (``FACEGEN_MEMWATCH=path.jsonl``, every ``FACEGEN_MEMWATCH_EVERY`` s, default 10) --
  a daemon thread that appends one JSON line per interval: RSS, glibc's heap (:func:`heap_info`: bytes in
  use, bytes free but kept, arenas), the Python objects tracemalloc traces, live threads, the most
  numerous object types by ``gc`` (their change since the first line) and, when tracemalloc runs
  (``FACEGEN_MEMWATCH_FRAMES`` > 0, default 1; it slows Python down), the 15 source lines whose traced
  memory grew most since the *baseline* snapshot (taken at the first line after ``FACEGEN_MEMWATCH_WARMUP``
  seconds, default 60). Extra counters (e.g. Gradio's live sessions) come from the ``extra`` callables.
  Method: RSS that grows while traced Python memory and object counts stay flat is native memory (torch,
  image codecs) or heap that glibc keeps; glibc's ``fordblks`` (free but kept) growing is fragmentation.
* :func:`trim_heap` -- ``malloc_trim(0)`` through ctypes: glibc gives the free pages of every arena back
  to the OS (what a many-threaded server frees in one thread's arena is otherwise kept there). Returns
  the bytes RSS dropped by; a no-op (0) off glibc. :class:`HeapTrimmer` calls it every few seconds.
* :func:`limit_arenas` -- at most n malloc arenas (mallopt ``M_ARENA_MAX``), so Gradio's worker threads
  share a few heaps instead of keeping one each.

Measured with ``bench/load.py`` (20 visitors and a faceswap; README, *Memory*): with glibc's defaults the
free-but-kept heap grew from 135 to 363 MB in two minutes while Python's traced memory grew 10 MB; with
2 arenas and a trim every 10 s RSS stays flat after the first minute.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Optional

_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC


def rss_bytes(pid: Optional[int] = None) -> int:
    """Resident set size of process `pid` (this one by default) from /proc; 0 where there is no /proc."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_info() -> Dict[str, int]:
    """glibc's malloc statistics (mallinfo2, all arenas): in_use (uordblks), free_kept (fordblks: freed
    but not given back), mmapped (hblkhd: big blocks, given back when freed), arena (heap bytes from the
    OS). Empty off glibc."""
    libc = _libc()
    if not libc or not hasattr(libc, "mallinfo2"):
        return {}
    libc.mallinfo2.restype = _Mallinfo2
    m = libc.mallinfo2()
    return {"arena": m.arena, "in_use": m.uordblks, "free_kept": m.fordblks, "mmapped": m.hblkhd}


def trim_heap() -> int:
    """Give glibc's free heap pages back to the OS (malloc_trim(0)); -> bytes RSS dropped by (0 off glibc)."""
    libc = _libc()
    if not libc:
        return 0
    before = rss_bytes()
    libc.malloc_trim(0)
    return max(0, before - rss_bytes())


M_ARENA_MAX = -8          # mallopt parameters (malloc.h)


def limit_arenas(n: int) -> bool:
    """At most `n` glibc malloc arenas from now on (mallopt M_ARENA_MAX; call it before the server starts
    its threads). glibc's default is 8 per core: each worker thread that meets contention gets an arena
    of its own and keeps what it freed there. MALLOC_ARENA_MAX in the environment wins (nothing is
    changed). -> whether the limit was set."""
    libc = _libc()
    if not libc or n <= 0 or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(libc.mallopt(M_ARENA_MAX, int(n)))


class Periodic:
    """A daemon thread that calls ``tick()`` every ``every`` seconds until ``stop()`` (every <= 0: never)."""

    name = "facegen-periodic"

    def __init__(self, every: float):
        self.every = float(every)
        self._stop = threading.Event()

    def enabled(self) -> bool:
        return self.every > 0

    def start(self):
        if self.enabled():
            threading.Thread(target=self._loop, name=self.name, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.tick()

    def tick(self) -> None:
        raise NotImplementedError


class HeapTrimmer(Periodic):
    """Calls :func:`trim_heap` every `every` seconds; `trims`, `released` (bytes RSS dropped by, in all)
    and `max_ms` (the longest trim) say what it did."""

    name = "facegen-heap-trim"

    def __init__(self, every: float = 10.0):
        super().__init__(every)
        self.trims, self.released, self.max_ms = 0, 0, 0.0

    def stats(self) -> dict:
        return {"trims": self.trims, "released_mb": round(self.released / 2**20, 1), "max_ms": round(self.max_ms, 1)}

    def enabled(self) -> bool:
        return self.every > 0 and bool(_libc())

    def tick(self) -> None:
        t = time.perf_counter()
        self.released += trim_heap()
        self.max_ms = max(self.max_ms, (time.perf_counter() - t) * 1000)
        self.trims += 1


def _type_counts(top: int = 25) -> Counter:
    return Counter(type(o).__qualname__ for o in gc.get_objects()).most_common(top)


class MemWatch(Periodic):
    """Appends a JSON line about this process's memory to `path` every `every` seconds (see the module)."""

    name = "facegen-memwatch"

    def __init__(self, path, every: float = 10.0, frames: int = 1, warmup: float = 60.0,
                 extra: Optional[Dict[str, Callable[[], object]]] = None):
        super().__init__(every)
        self.path, self.frames, self.warmup = Path(path), int(frames), float(warmup)
        self.extra = dict(extra or {})
        self._t0 = time.monotonic()
        self._baseline = None
        self._types0: Optional[dict] = None

    @classmethod
    def from_env(cls, extra=None) -> Optional["MemWatch"]:
        path = os.environ.get("FACEGEN_MEMWATCH")
        if not path:
            return None
        return cls(path, float(os.environ.get("FACEGEN_MEMWATCH_EVERY", "10")),
                   int(os.environ.get("FACEGEN_MEMWATCH_FRAMES", "1")),
                   float(os.environ.get("FACEGEN_MEMWATCH_WARMUP", "60")), extra)

    def start(self) -> "MemWatch":
        if self.frames > 0:
            import tracemalloc
            tracemalloc.start(self.frames)
        return super().start()

    def tick(self) -> None:
        try:
            line = self.sample()
        except Exception as e:          # a diagnosis tool must never take the server down
            line = {"error": f"{type(e).__name__}: {e}"}
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")

    def sample(self) -> dict:
        t = time.monotonic() - self._t0
        types = dict(_type_counts())
        if self._types0 is None:
            self._types0 = types
        line = {"t": round(t, 1), "rss_mb": round(rss_bytes() / 2**20, 1),
                "heap_mb": {k: round(v / 2**20, 1) for k, v in heap_info().items()},
                "threads": threading.active_count(),
                "types": {k: [v, v - self._types0.get(k, 0)] for k, v in types.items()}}
        for name, fn in self.extra.items():
            try:
                line[name] = fn()
            except Exception as e:
                line[name] = f"{type(e).__name__}: {e}"
        if self.frames > 0:
            import tracemalloc
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)])
            line["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
            if self._baseline is None and t >= self.warmup:
                self._baseline = snap
                line["baseline"] = True
            if self._baseline is not None:
                diff = snap.compare_to(self._baseline, "lineno")[:15]
                line["growth"] = [[f"{s.traceback[0].filename.split('site-packages/')[-1]}:{s.traceback[0].lineno}",
                                   round(s.size_diff / 2**20, 2), s.count_diff] for s in diff]
        return line


__all__ = ["MemWatch", "HeapTrimmer", "limit_arenas", "trim_heap", "heap_info", "rss_bytes"]
