"""A hosted Space that stays up for everyone (issue #16): fair scheduling, limits, failure modes, MCP.

* facegen.hosting on its own: the long-job line (FIFO, one job per session, cancel frees the slot at once,
  a gone event counts as cancelled), per-thread torch thread budgets, the temp-folder sweep.
* The app in its own process (``python app.py``, its temp folder private to the test):
  - during one visitor's faceswap (120 s, as the issue asks; FACEGEN_TEST_LONG_S shortens it), another
    visitor's one-face /generate keeps being served, pixel-identical to a lone visitor's, worst case
    printed and held under 5 s; a second long job of the same visitor is refused with its place; a
    second visitor's long job waits with its place in line and runs after; over-cap requests are
    refused at once (not queued behind the long job);
  - Stop (/stop) and a client's job.cancel() free the slot for the next visitor long before the
    stopped job's budget would have run out;
  - every endpoint refuses requests over its caps with a message naming the cap;
  - uploads over FACEGEN_MAX_UPLOAD are refused while they arrive (the server answers 413 naming the
    limit before the body is sent, and keeps no partial file); stale request folders are swept;
  - corrupt, cut, checksum-failing and crashing registry models give a clear error and the app keeps
    serving its model;
  - the MCP server lists the documented tools (every argument described) and returns a generated face.
"""

import asyncio
import io
import json
import os
import select
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from PIL import Image

from facegen import hosting
from facegen.engine.errors import InputError

from conftest import ROOT, launch_app

LONG_S = float(os.environ.get("FACEGEN_TEST_LONG_S", "120"))   # the faceswap length
BOUND_S = 5.0                                                   # the bound for a one-face /generate
GEN = dict(count=1, psi=0.7, cutoff=0, noise_mode="const", model="mini")
SWAP = dict(face="3", psi=0.7, video=None, sample="short-silent", views=50, detector="auto", model="mini")


# ---------------------------------------------------------------------------
# facegen.hosting on its own
# ---------------------------------------------------------------------------


def _start(jobs, session, kind="job", alive=None, hold=None, places=None):
    """Run one job of `session` in a thread; it holds its slot until `hold` is set. -> (thread, state)."""
    state = {"started": threading.Event(), "error": None}

    def body():
        try:
            with jobs.run(session, kind, alive, (lambda p, r: places.append(p)) if places is not None else None) as t:
                state["ticket"] = t
                state["started"].set()
                while not hold.wait(0.02):
                    t.check()
        except Exception as e:         # JobCancelled / JobRefused: the test reads it
            state["error"] = e
    th = threading.Thread(target=body, daemon=True)
    th.start()
    return th, state


def _until(cond, what):
    for _ in range(500):
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_long_jobs_run_in_order_one_per_session():
    jobs = hosting.LongJobs(slots=1, poll=0.01)
    hold_a, hold_b, hold_c = threading.Event(), threading.Event(), threading.Event()
    places_b, places_c = [], []
    ta, a = _start(jobs, "a", "faceswap", hold=hold_a)
    _until(a["started"].is_set, "a to start")
    with pytest.raises(hosting.JobRefused, match="faceswap is running"):
        jobs.submit("a", "encoding")
    tb, b = _start(jobs, "b", hold=hold_b, places=places_b)
    _until(lambda: jobs.status()["waiting"] == 1, "b to wait")
    tc, c = _start(jobs, "c", hold=hold_c, places=places_c)
    _until(lambda: jobs.status()["waiting"] == 2, "c to wait")
    assert jobs.status("c")["mine"].startswith("your job is 2nd in line")
    with pytest.raises(hosting.JobRefused, match="2nd in line"):
        jobs.submit("c", "animation")
    hold_a.set()
    _until(b["started"].is_set, "b to start after a")
    _until(lambda: places_c[-1] == 1, "c to move up to 1st in line")
    assert not c["started"].is_set() and jobs.status()["running"] == ["job"]
    hold_b.set()
    _until(c["started"].is_set, "c to start after b")
    hold_c.set()
    for t in (ta, tb, tc):
        t.join(5)
    moves = [p for i, p in enumerate(places_c) if i == 0 or p != places_c[i - 1]]
    assert places_b[0] == 1 and moves == [2, 1]                # c moved up when b took the slot
    assert a["error"] is b["error"] is c["error"] is None and jobs.status()["running"] == []


def test_cancel_frees_the_slot_before_the_job_notices():
    jobs = hosting.LongJobs(slots=1, poll=0.01)
    hold_a, hold_b = threading.Event(), threading.Event()
    ta, a = _start(jobs, "a", hold=hold_a)
    _until(a["started"].is_set, "a to start")
    ticket_a = a["ticket"]
    tb, b = _start(jobs, "b", hold=hold_b)
    _until(lambda: jobs.status()["waiting"] == 1, "b to wait")
    # a's thread is stuck in a long step (never checks) while it is cancelled: b must get the slot anyway
    ticket_a.check = lambda: None
    assert jobs.cancel("a") and not jobs.cancel("nobody")
    _until(b["started"].is_set, "b to take the freed slot")
    assert jobs.status("a")["mine"] is None
    with pytest.raises(hosting.JobCancelled):
        hosting.Ticket.check(ticket_a)               # a's own next check ends it
    hold_a.set(), hold_b.set()
    ta.join(5), tb.join(5)


def test_a_gone_event_cancels_its_job_waiting_or_running():
    jobs = hosting.LongJobs(slots=1, poll=0.01)
    hold_a, hold_b = threading.Event(), threading.Event()
    alive_a, alive_b = [True], [True]
    ta, a = _start(jobs, "a", alive=lambda: alive_a[0], hold=hold_a)
    _until(a["started"].is_set, "a to start")
    tb, b = _start(jobs, "b", alive=lambda: alive_b[0], hold=hold_b)
    _until(lambda: jobs.status()["waiting"] == 1, "b to wait")
    alive_b[0] = False                               # b's visitor left while waiting
    tb.join(5)
    assert isinstance(b["error"], hosting.JobCancelled) and not b["started"].is_set()
    alive_a[0] = False                               # a's event was cancelled (Stop / job.cancel())
    ta.join(5)
    assert isinstance(a["error"], hosting.JobCancelled) and jobs.status() == {
        "slots": 1, "running": [], "waiting": 0, "mine": None}


def test_thread_budgets_are_per_thread_and_nest():
    seen = {}
    torch.set_num_threads(1)
    go, done = threading.Event(), threading.Event()

    def long_job():
        torch.set_num_threads(2)                               # this thread's own count before the job
        with hosting.intra_op_threads(1):
            seen["long"] = torch.get_num_threads()
            with hosting.intra_op_threads(2):                  # a short helper inside: the smaller budget
                seen["nested"] = torch.get_num_threads()
            go.set()
            done.wait(5)
        seen["after"] = torch.get_num_threads()

    def short_job():
        go.wait(5)
        with hosting.intra_op_threads(2):
            seen["short"] = torch.get_num_threads()
            done.set()
    threads = [threading.Thread(target=long_job), threading.Thread(target=short_job)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    assert seen == {"long": 1, "nested": 1, "short": 2, "after": 2}
    assert hosting.ThreadBudgets(cores=2).for_long(1) == 1 and hosting.ThreadBudgets(cores=16).for_long(3) == 5


def test_temp_sweeper_removes_only_stale_folders(tmp_path):
    root = tmp_path / "out"
    now = time.time()
    for name, age, inner in [("stale", 100, 100), ("fresh", 1, 1), ("stale-dir-fresh-file", 100, 1),
                             ("stale-in-use", 100, 100)]:
        d = root / name
        d.mkdir(parents=True)
        (d / "x.png").write_bytes(b"0" * 10)
        os.utime(d / "x.png", (now - inner, now - inner))
        os.utime(d, (now - age, now - age))
    sweeper = hosting.TempSweeper(root, max_age=50, every=3600)
    with sweeper.pinned(root / "stale-in-use"):               # a running job's folder
        assert [p.name for p in sweeper.sweep(now)] == ["stale"]
    assert sorted(p.name for p in root.iterdir()) == ["fresh", "stale-dir-fresh-file", "stale-in-use"]
    assert sweeper.maybe_sweep() == []                        # not due yet
    assert [p.name for p in sweeper.sweep(now)] == ["stale-in-use"]
    assert hosting.folder_bytes(root) == 20


def test_zero_gpu_trains_faceswap_in_resumable_chunks(studio_model, tmp_path, monkeypatch):
    """On ZeroGPU (SPACES_ZERO_GPU) a faceswap budget is trained in chunks that each fit one spaces.GPU call
    (at most FACEGEN_ZERO_GPU_MAX - 60 s), each resuming from the checkpoint, with progress between them."""
    if studio_model != "mini":
        pytest.skip("needs assets/mini and its faceswap pack")
    torch.set_num_threads(1)
    from demos import faceswap as tab
    from facegen import studio
    from facegen.engine import latents as L
    from facegen.features import faceswap as fs
    G = studio.models().get("mini")
    video = next(p for p in fs.sample_videos() if p.stem == "short-silent")
    ws = L.seeds_to_ws(G, [3], psi=0.7)[0].cpu().numpy()
    fs.save_prepared(fs.prepare(G, studio.models().pack(G), ws, str(video), 50, "auto", log=lambda *a: None), tmp_path)
    monkeypatch.setattr(tab, "ZERO_GPU", True)
    monkeypatch.setattr(tab, "ZERO_GPU_MAX", 70)                     # chunks of 10 s
    reports = []
    res = tab._train(str(tmp_path), 22, lambda frac, desc: reports.append(desc))
    assert reports == ["Training: 0 of 22 s", "Training: 10 of 22 s", "Training: 20 of 22 s"]
    assert res["seconds"] >= 21 and res["step"] > 0      # one model trained across the calls (not the last chunk's)
    from demos.common import ZERO_GPU_MAX, gpu_seconds
    assert gpu_seconds(ZERO_GPU_MAX - 60) >= ZERO_GPU_MAX - 60 + 30    # a default chunk's call has its margin


# ---------------------------------------------------------------------------
# The app in its own process
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def space(studio_model, tmp_path_factory):
    """The studio with the default hosting settings, in its own process and temp folder."""
    if studio_model != "mini":
        pytest.skip("the scheduling tests use mini's faceswap pack (assets/mini)")
    tmp = tmp_path_factory.mktemp("space")
    (tmp / "tmp").mkdir()
    proc, url = launch_app("mini", tmp, {"TMPDIR": str(tmp / "tmp")})
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _client(url):
    from gradio_client import Client
    return Client(url, verbose=False)


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _face(client, seed) -> np.ndarray:
    gallery, _, _ = client.predict(seeds=str(seed), **GEN, api_name="/generate")
    return _png(gallery[0]["image"])


def _wait_for(client, cond, what, tries=600):
    for _ in range(tries):
        s = client.predict(api_name="/jobs")
        if cond(s):
            return s
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {s}")


def _steps(status: str) -> int:
    return int(status.split("Trained ")[1].split(" steps")[0])


def _long_video(tmp_path) -> Path:
    """A 25 s clip: over the faceswap tab's 20 s cap."""
    from facegen.features import faceswap as fs
    path = tmp_path / "long.mp4"
    subprocess.run([fs.ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=gray:s=32x32:r=5:d=25",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def test_short_jobs_are_served_during_a_long_faceswap(space, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    a, b, c, lone = (_client(space) for _ in range(4))
    expected = {s: _face(lone, s) for s in range(5)}            # a lone visitor's faces
    job_a = a.submit(**SWAP, budget=LONG_S, api_name="/faceswap_train")
    _wait_for(b, lambda s: s["running"], "A's faceswap to start")

    with pytest.raises(AppError, match=r"One long job per visitor.*faceswap training is running"):
        a.predict(**SWAP, budget=5, api_name="/faceswap_train")
    job_b = b.submit(**SWAP, budget=5, api_name="/faceswap_train")
    assert "1st in line" in _wait_for(b, lambda s: s["waiting"] == 1, "B's training to wait")["mine"]
    with pytest.raises(AppError, match="maximum value 600"):    # over a cap: refused at once, not queued
        c.predict(**SWAP, budget=601, api_name="/faceswap")
    with pytest.raises(AppError, match="the limit is 20 s"):
        c.predict(**dict(SWAP, video=handle_file(str(_long_video(tmp_path)))), budget=5, color="none",
                  region="head", api_name="/faceswap")
    assert not job_a.done()

    latencies = []
    while not job_a.done():
        seed = len(latencies) % 5
        t = time.monotonic()
        face = _face(c, seed)
        latencies.append(time.monotonic() - t)
        np.testing.assert_array_equal(face, expected[seed])
    preview_a, status_a = job_a.result()
    assert not job_b.done()                                     # B's training waited for A's to end
    print(f"\n/generate (1 face) during a {LONG_S:.0f} s faceswap: {len(latencies)} requests, worst "
          f"{max(latencies):.2f} s, median {np.median(latencies):.2f} s (bound {BOUND_S:.0f} s)")
    assert len(latencies) - 1 >= 10, latencies                  # all but the last ended while A trained
    assert max(latencies) < BOUND_S, latencies
    assert _steps(status_a) > 0
    _, status_b = job_b.result()                                # then B's ran, in its own session
    assert _steps(status_b) > 0


@pytest.mark.parametrize("how", ["stop-endpoint", "client-cancel"])
def test_stop_frees_the_slot_for_the_next_visitor(space, how):
    a, b = _client(space), _client(space)
    budget = 120
    job_a = a.submit(**SWAP, budget=budget, api_name="/faceswap_train")
    _wait_for(b, lambda s: s["running"], "A's faceswap to start")
    t0 = time.monotonic()
    job_b = b.submit(**SWAP, budget=5, api_name="/faceswap_train")
    _wait_for(b, lambda s: s["waiting"] == 1, "B to wait")
    if how == "stop-endpoint":
        assert a.predict(api_name="/stop").startswith("Stopped: your faceswap training is running")
    else:
        job_a.cancel()
    _, status_b = job_b.result()
    assert _steps(status_b) > 0
    assert time.monotonic() - t0 < budget            # B did not wait for A's budget to run out
    _wait_for(b, lambda s: not s["running"] and not s["waiting"], "the line to empty")
    if how == "stop-endpoint":
        with pytest.raises(Exception, match="stopped"):
            job_a.result()


def _refused(client, api_name, **kw) -> str:
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError) as e:
        client.predict(api_name=api_name, **kw)
    return str(e.value)


def test_every_endpoint_enforces_its_caps(space, tmp_path):
    from gradio_client import handle_file
    c = _client(space)
    anim = dict(face="7", psi=0.7, mode="yaw", frames=60, fps=24, amount=2.5, pingpong=False, keep_others=False,
                size=256, grid_size=5, grid_rows="", grid_cols="", layer_start=0, layer_end=7, latent_file=None,
                directions_file=None, noise_mode="const", model="mini")
    photo = tmp_path / "face.png"
    from facegen.world.render import render_seed
    Image.fromarray(render_seed(7, size=64).image).save(photo)
    enc = dict(photo=handle_file(str(photo)), face=1, mode="auto", refine_steps=10, time_budget=1, model="mini",
               space="W")
    long_video = _long_video(tmp_path)
    cases = [
        ("/generate", dict(GEN, seeds="0", count=33), "maximum value 32"),
        ("/generate", dict(GEN, seeds="0-40", count=1), "at most 32"),
        ("/mix", dict(sources="0-20", templates="1", layer_start=0, layer_end=3, psi=0.7, noise_mode="const",
                      model="mini"), "at most 8"),
        ("/fuse", dict(faces="0-9", weights="", layer_start=0, layer_end=9, psi=0.7, interp_steps=7,
                       noise_mode="const", model="mini"), "at most 8"),
        ("/fuse", dict(faces="1,2", weights="", layer_start=0, layer_end=9, psi=0.7, interp_steps=17,
                       noise_mode="const", model="mini"), "maximum value 16"),
        ("/customize", dict(classes=["smiling"], method="zcode", count=65, psi=0.7, seed=0, check="none",
                            model="mini"), "maximum value 64"),
        ("/edit", dict(face="7", psi=0.7, steps='{"yaw": 6}', keep_others=False, layer_start=0, layer_end=7,
                       latent_file=None, directions_file=None, noise_mode="const", model="mini"), "use -5 to 5"),
        ("/animate", dict(anim, frames=241), "maximum value 240"),
        ("/animate", dict(anim, size=1024), "[128, 256, 512]"),
        ("/animate", dict(anim, fps=61), "maximum value 60"),
        ("/encode", dict(enc, refine_steps=501), "maximum value 500"),
        ("/encode", dict(enc, time_budget=31), "maximum value 30"),
        ("/faceswap", dict(SWAP, budget=601, color="none", region="head"), "maximum value 600"),
        ("/faceswap", dict(SWAP, budget=5, views=201, color="none", region="head"), "maximum value 200"),
        ("/faceswap", dict(SWAP, budget=5, video=handle_file(str(long_video)), color="none", region="head"),
         "the limit is 20 s"),
        ("/faceswap_train", dict(SWAP, budget=0), "minimum value 5"),
        ("/shelf_add", dict(faces="0-40", psi=0.7, model="mini"), "at most 32"),
    ]
    for api_name, kw, needle in cases:
        msg = _refused(c, api_name, **kw)
        assert needle in msg, (api_name, kw, msg)
    assert c.predict(api_name="/jobs")["running"] == []            # none of them became a long job


@pytest.fixture(scope="module")
def limited(studio_model, tmp_path_factory):
    """The studio with a 1 MB upload limit, a 4 s temp age, and a registry of broken models."""
    if studio_model != "mini":
        pytest.skip("needs assets/mini")
    tmp = tmp_path_factory.mktemp("limited")
    (tmp / "tmp").mkdir()
    garbage = tmp / "garbage.pkl"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    cut, crash = tmp / "cut", tmp / "crash"
    for d in (cut, crash):
        d.mkdir()
    mini = ROOT / "assets" / "mini"
    (cut / "config.json").write_text((mini / "config.json").read_text())
    (cut / "model.safetensors").write_bytes((mini / "model.safetensors").read_bytes()[:300_000])   # download cut short
    cfg = json.loads((mini / "config.json").read_text())
    cfg["img_resolution"] = -3                              # loads, then breaks with a plain ValueError
    (crash / "config.json").write_text(json.dumps(cfg))
    (crash / "model.safetensors").write_bytes((mini / "model.safetensors").read_bytes())
    reg = {"models": [
        {"name": "garbage", "path": str(garbage), "format": "stylegan2-ada-pkl", "resolution": 64},
        {"name": "badsum", "path": str(garbage), "format": "stylegan2-ada-pkl", "sha256": "a" * 64, "size": 5000},
        {"name": "cut", "path": str(cut), "format": "hub-native"},
        {"name": "crash", "path": str(crash), "format": "hub-native"}]}
    (tmp / "registry.json").write_text(json.dumps(reg))
    env = {"TMPDIR": str(tmp / "tmp"), "FACEGEN_MAX_UPLOAD": "1mb", "FACEGEN_TEMP_MAX_AGE": "4",
           "FACEGEN_TEMP_SWEEP_EVERY": "1", "FACEGEN_REGISTRY": str(tmp / "registry.json")}
    proc, url = launch_app("mini", tmp, env)
    yield url, tmp / "tmp"
    proc.terminate()
    proc.wait(timeout=30)


def test_uploads_over_the_limit_are_refused_while_they_arrive(limited):
    url, tmp = limited
    total = 50 << 20                                            # a 50 MB "video" against a 1 MB limit
    head = (b"--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.mp4\"\r\n"
            b"Content-Type: video/mp4\r\n\r\n")
    u = urlsplit(url)
    sent, chunk = 0, b"\0" * (256 << 10)
    with socket.create_connection((u.hostname, u.port)) as s:
        s.sendall(f"POST /gradio_api/upload HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: multipart/form-data; "
                  f"boundary=XyZ\r\nContent-Length: {len(head) + total}\r\n\r\n".encode() + head)
        reply = b""
        while sent < total:
            if select.select([s], [], [], 0)[0]:
                reply = s.recv(65536)
                break
            try:
                s.sendall(chunk)
            except OSError:                                    # the server closed the connection
                break
            sent += len(chunk)
        s.settimeout(30)
        while b"\r\n\r\n" not in reply or b"bytes" not in reply:
            more = s.recv(65536)
            if not more:
                break
            reply += more
    text = reply.decode("latin-1")
    print(f"\nupload refused after {sent >> 20} of {total >> 20} MB sent: {text.splitlines()[0] if text else ''}")
    assert text.startswith("HTTP/1.1 413") and "maximum allowed size of 1048576 bytes" in text, text[:300]
    assert sent < total // 2                                   # answered long before the body was sent
    big = [p for p in tmp.rglob("*") if p.is_file() and p.stat().st_size > (1 << 20)]
    assert big == []                                            # no partial upload kept


def test_stale_request_folders_are_swept(limited):
    url, tmp = limited
    c = _client(url)
    c.predict(seeds="1", **GEN, api_name="/generate")
    out = tmp / "facegen-studio"
    first = set(out.iterdir())
    assert first
    time.sleep(6)                                               # older than FACEGEN_TEMP_MAX_AGE (4 s)
    c.predict(seeds="2", **GEN, api_name="/generate")           # the next request sweeps
    now = set(out.iterdir())
    assert not (first & now) and len(now) == 1


@pytest.mark.parametrize("name, needle", [("garbage", "not a Python pickle"), ("badsum", "has sha256"),
                                          ("cut", "not a readable safetensors"), ("crash", "Loading 'crash' failed"),
                                          ("ffhq-config-f", "HF_HUB_OFFLINE")])
def test_a_model_that_cannot_load_leaves_the_app_serving(limited, name, needle):
    url, _ = limited
    c = _client(url)
    before = _face(c, 4)
    msg = _refused(c, "/load_model", model=name)
    assert needle in msg, msg
    np.testing.assert_array_equal(_face(c, 4), before)          # the same model still serves, unchanged
    banner = c.predict(model="mini", api_name="/load_model")[0]
    assert "mini" in banner and "fingerprint" in banner


def test_mcp_lists_the_tools_and_returns_a_face(space):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client
    from demos.tools import TOOLS
    import httpx
    expected = _face(_client(space), 11)

    async def session():
        async with streamablehttp_client(space + "gradio_api/mcp/") as (r, w, _):
            async with ClientSession(r, w) as s:
                await s.initialize()
                tools = {t.name: t for t in (await s.list_tools()).tools}
                gen = await s.call_tool("generate", {"seeds": "11", "count": 1, "psi": 0.7, "cutoff": 0,
                                                     "noise_mode": "const", "model": "mini"})
                fuse = await s.call_tool("fuse", {"faces": "11, 11", "weights": "", "layer_start": 0,
                                                  "layer_end": 9, "psi": 0.7, "interp_steps": 0,
                                                  "noise_mode": "const", "model": "mini"})
                return tools, gen, fuse
    tools, gen, fuse = asyncio.run(session())
    assert set(tools) == set(TOOLS)                             # the documented endpoints; no shelf tools
    for t in tools.values():
        assert len(t.description) > 40 and "Returns:" in t.description, t.name
        for p, schema in t.inputSchema["properties"].items():
            assert schema.get("description"), f"{t.name}: argument {p} is not described"
    assert not gen.isError, gen.content
    url = next(c.text for c in gen.content if c.type == "text" and "seed00011.png" in c.text)
    png_url = url[url.index("http"):].split("'")[0]
    np.testing.assert_array_equal(_png(io.BytesIO(httpx.get(png_url).content)), expected)
    image = next(c for c in fuse.content if c.type == "image")   # a single image comes back as image content
    import base64
    np.testing.assert_array_equal(_png(io.BytesIO(base64.b64decode(image.data))), expected)


def test_the_space_serves_the_registry_default_with_its_pack(tmp_path):
    """`python app.py` without FACEGEN_MODEL (how the Space runs it) serves the registry's default, mini v2:
    a face asked for without naming a model is the one the core draws with mini-v2, and customisation's
    default method draws with the recipe mini-v2's own pack measured."""
    import facegen
    from facegen.features.generate import generate_seeds
    from facegen.packs.pack import find_pack
    from facegen.packs.recipes import recipe_for
    if not (ROOT / "assets" / "mini-v2" / "config.json").is_file():
        pytest.skip("assets/mini-v2 is not built")
    proc, url = launch_app(None, tmp_path)
    try:
        client = _client(url)
        gallery, _, _ = client.predict(seeds="5", **{k: v for k, v in GEN.items() if k != "model"},
                                       api_name="/generate")
        G = facegen.load_generator("mini-v2")
        direct, _, _ = generate_seeds(G, "5", psi=0.7)
        np.testing.assert_array_equal(_png(gallery[0]["image"]), direct[0])
        _, note = client.predict(classes=["beard"], count=2, psi=0.7, seed=7, api_name="/customize")
        r = recipe_for(find_pack(G, hub=False), ["beard"])
        assert note.startswith(f"the pack's recipe for 'beard' ({r['method']} + {r['check']}"), note
    finally:
        proc.terminate()
        proc.wait(timeout=30)
