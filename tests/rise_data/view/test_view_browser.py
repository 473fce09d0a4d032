"""rise-data view in a real browser: Debian's chromium, headless, loads the page from file:// with no console
message, draws the store's own values (read back from the page and its canvases), and a screenshot shows
the player and the plots. Skips where chromium is absent (install: apt-get install -y chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_view import run_dir, view, viewed  # noqa: F401  (fixtures: the encoded CueMemory store, a run)

from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode
from rise_data.store import open_store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium: apt-get install -y chromium")
WINDOW = "1300,2000"


def chromium(tmp_path: Path, url: str, *args: str) -> tuple[str, str]:
    """(stdout, stderr) of headless chromium on ``url``; console messages are logged to stderr."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=20000",
        f"--window-size={WINDOW}",
        *args,
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return out.stdout, out.stderr


def console(stderr: str) -> list[str]:
    """Every console message the page produced (errors, warnings, logs: the page writes none of its own)."""
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]


def status(dom: str) -> dict:
    m = re.search(r'<pre id="status">(.*?)</pre>', dom, re.S)
    assert m and m.group(1), "the page wrote no status (did its script run?)"
    return json.loads(m.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


def check_page(tmp_path: Path, store: str, episode: int, step: int) -> dict:
    """Load the page at ``episode``/``step``: no console message, the values and pixels equal the store's."""
    page = tmp_path / "page"
    view([store, "-o", str(page), "--episodes", f"0,{episode}"])
    url = f"{(page / 'index.html').as_uri()}#episode={episode}&step={step}&selftest=1"
    dom, err = chromium(tmp_path, url, "--dump-dom")
    assert console(err) == []
    st = status(dom)
    assert st["errors"] == [] and st["done"], st
    s = open_store(store)
    a, n = int(s.episodes()["start"][episode]), int(s.episodes()["length"][episode]) + 1
    assert (st["episode"], st["step"], st["frame_step"]) == (episode, step, step)
    for k in ("action", "reward", "terminated", "truncated"):
        assert st[k] == s.read(k, a, a + n).tolist(), k
    gray, frame = s.read("obs", a + step, a + step + 1)[0], s.read("frame", a + step, a + step + 1)[0]
    # what the canvases hold, read back from the browser: gray is drawn as R = G = B
    assert st["gray"] == {
        "sum": 3 * int(gray.sum()),
        "w": gray.shape[1],
        "h": gray.shape[0],
        "alpha": 255 * gray.size,
    }
    assert st["rgb"]["sum"] == int(frame.sum()) and (st["rgb"]["h"], st["rgb"]["w"]) == frame.shape[:2]
    assert st["embeddings"] == s.embedding_names()
    return st


def check_screenshot(tmp_path: Path, url: str, rects: dict) -> np.ndarray:
    shot = tmp_path / "shot.png"
    _, err = chromium(tmp_path, url, f"--screenshot={shot}")
    assert console(err) == []
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[1] == int(WINDOW.split(",")[0])
    for name, (x, y, w, h) in rects.items():  # the player, the timelines and a histogram are drawn, not blank
        crop = img[y : y + h, x : x + w]
        assert crop.size and crop.reshape(-1, 3).std(axis=0).max() > 10, name
        assert len(np.unique(crop.reshape(-1, 3), axis=0)) >= 3, name
    return img


def test_page_in_chromium(viewed, tmp_path):  # noqa: F811
    st = check_page(tmp_path, viewed, episode=2, step=1)
    url = (tmp_path / "page" / "index.html").as_uri() + "#episode=2&step=1"
    check_screenshot(tmp_path, url, st["rects"])


@pytest.mark.slow
def test_pong_page_in_chromium(tmp_path):
    store = str(tmp_path / "pong.zarr")
    collect(CollectConfig("ALE/Pong-v5", store, steps=400, num_envs=2, seed=0, progress=False))
    encode(EncodeConfig(store=store, encoder="downsample", device="cpu", progress=False, threads=1))
    st = check_page(tmp_path, store, episode=1, step=60)
    check_screenshot(
        tmp_path, (tmp_path / "page" / "index.html").as_uri() + "#episode=1&step=60", st["rects"]
    )


@pytest.mark.slow
def test_run_page_in_chromium(run_dir, tmp_path):  # noqa: F811
    view([run_dir, "-o", str(tmp_path / "p")])
    dom, err = chromium(tmp_path, (tmp_path / "p" / "index.html").as_uri() + "#selftest=1", "--dump-dom")
    assert console(err) == []
    st = status(dom)
    assert st["errors"] == [] and st["drawn"]["train-loss"] == 3 and st["drawn"]["returns"] >= 1
