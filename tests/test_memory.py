"""Memory of the hosted app stays bounded (issue #16): closed sessions are freed, freed heap goes back to the OS.

* A visitor's session (its shelf, its last results) is dropped -- the objects freed, not just unlisted --
  once the visitor has gone (its heartbeat closed) and the grace period has passed; a visitor who is
  still there keeps everything (``demos/sessions.py``, on the app the tests launch in this process).
* ``facegen.memwatch.trim_heap`` gives the heap pages glibc kept after a free back to the OS (RSS drops),
  and the ``HeapTrimmer`` thread calls it; ``MemWatch`` writes its JSON lines.
The RSS trend under load is measured by ``bench/load.py`` (bench/results/load-soak.json), not here.
"""

import datetime
import gc
import json
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest

from facegen import memwatch

ROOT = Path(__file__).resolve().parent.parent


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting {timeout:.0f} s for {what}")
        time.sleep(0.2)


def test_a_closed_sessions_state_is_freed_and_an_open_one_is_kept(app_url):
    import app
    import gradio as gr
    from gradio_client import Client
    from facegen import studio
    holder = app.demo.state_holder
    shelf_id = next(k for k, b in app.demo.blocks.items() if isinstance(b, gr.State) and isinstance(b.value, studio.Shelf))
    gone, staying = Client(app_url, verbose=False), Client(app_url, verbose=False)
    for c, seed in ((gone, 11), (staying, 12)):
        c.predict(faces=str(seed), psi=0.7, model="mini", api_name="/shelf_add")
    shelf = holder.session_data[gone.session_hash].state_data[shelf_id]
    assert len(shelf) == 1, "the visitor's shelf holds the face it added"
    freed = weakref.ref(shelf)
    del shelf

    gone.close()                   # the visitor leaves: its heartbeat ends (within Gradio's 15 s heartbeat)
    _wait(lambda: holder.session_data[gone.session_hash].is_closed, 60, "Gradio to notice the closed session")
    later = datetime.datetime.now() + datetime.timedelta(seconds=app.SESSIONS.grace + 1)
    # Sessions other tests closed longer than the grace period ago may go now (a slow suite leaves some);
    # the one closed just now may not.
    early = app.SESSIONS.sweep(now=datetime.datetime.now())
    assert gone.session_hash not in early and staying.session_hash not in early, \
        "a session closed within the grace period was dropped"
    dropped = app.SESSIONS.sweep(now=later)

    assert gone.session_hash in dropped and gone.session_hash not in holder.session_data
    assert gone.session_hash not in holder.time_last_used
    gc.collect()
    assert freed() is None, "the closed session's shelf is still referenced somewhere"
    assert staying.session_hash in holder.session_data, "an open session was dropped"
    gallery, _ = staying.predict(api_name="/shelf_list")
    assert [g["caption"] for g in gallery] == ["#1 seed 12"], "the open session lost its shelf"
    staying.close()


TRIM_SCRIPT = """
import gc, json
from facegen import memwatch
blocks = [bytes(2048) for _ in range(96 * 1024)]       # 192 MB of malloc'd blocks (over pymalloc's 512 B)
sentinel = bytes(2048)                                 # allocated last: the heap's top cannot shrink by itself
del blocks
gc.collect()
print(json.dumps({"dropped": memwatch.trim_heap()}))
"""


def test_trim_heap_gives_freed_heap_back_to_the_os():
    # A fresh process: in this one the app's own HeapTrimmer thread (launched by the app fixtures) may
    # trim first, and an old heap's layout decides what a free returns by itself.
    out = subprocess.run([sys.executable, "-c", TRIM_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    dropped = json.loads(out.stdout.strip().splitlines()[-1])["dropped"]
    assert dropped > 96 * 2**20, f"malloc_trim gave back only {dropped / 2**20:.0f} MB of the 192 MB freed"


def test_heap_trimmer_and_memwatch_threads_run(tmp_path):
    trimmer = memwatch.HeapTrimmer(every=0.05).start()
    watch = memwatch.MemWatch(tmp_path / "mem.jsonl", every=0.05, frames=0, extra={"n": lambda: 7}).start()
    try:
        _wait(lambda: trimmer.trims >= 2, 30, "two heap trims")
        _wait(lambda: (tmp_path / "mem.jsonl").exists() and len((tmp_path / "mem.jsonl").read_text().splitlines()) >= 2,
              30, "two memwatch lines")
    finally:
        trimmer.stop()
        watch.stop()
    line = json.loads((tmp_path / "mem.jsonl").read_text().splitlines()[0])
    assert line["rss_mb"] > 0 and line["n"] == 7 and line["heap_mb"]["in_use"] > 0, line
