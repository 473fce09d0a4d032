"""rise-data view (without a browser): the page's data equal the store's, the math equals naive loops, bad
input is refused in one line, and --serve answers on 127.0.0.1 only. tests/rise_data/view/test_view_browser.py loads it."""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rise_data.cli import app
from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode
from rise_data.share.pack import PackConfig, pack
from rise_data.store import StoreLayout, create_store, open_store
from rise_data.view.analysis import cosine_similarity, histogram, project_2d, quantize, shown_steps
from rise_data.view.data import shown_rows
from rise_data.view.serve import make_server

runner = CliRunner()
SMALL = StoreLayout(frame_chunk_bytes=64 * 64 * 3 * 8, scalar_chunk_rows=64, embedding_chunk_bytes=8192)


@pytest.fixture(scope="module")
def viewed(tmp_path_factory) -> str:
    """A real CueMemory store (4 episodes of 33 rows, RGB frames, small chunks) with downsample embeddings."""
    path = str(tmp_path_factory.mktemp("view") / "cue.zarr")
    collect(CollectConfig("rise/CueMemory-v0", path, episodes=4, num_envs=2, progress=False, layout=SMALL))
    encode(EncodeConfig(store=path, encoder="downsample", device="cpu", progress=False, threads=1))
    return path


def view(args: list[str]) -> str:
    out = runner.invoke(app, ["view", *args, "--quiet"])
    assert out.exit_code == 0, out.output
    return out.output


def one_line_error(args: list[str], code: int = 2) -> str:
    out = runner.invoke(app, ["view", *args, "--quiet"])
    lines = [ln for ln in out.output.strip().splitlines() if ln.startswith("error:")]
    assert out.exit_code == code and len(lines) == 1, out.output
    return lines[0]


def page_data(folder: Path) -> tuple[dict, dict[int, dict]]:
    """The overview and the episodes exactly as the page embeds them."""
    html = (folder / "index.html").read_text()
    head = "window.RISE_VIEW = "
    overview = json.loads(html[html.index(head) + len(head) : html.index(";</script>", html.index(head))])
    episodes = {}
    for row in overview["shown"]:
        text = (folder / row["file"]).read_text()
        assert text.startswith("riseEpisode(") and text.endswith(");\n")
        episodes[row["episode"]] = json.loads(text[len("riseEpisode(") : -3])
    return overview, episodes


def png(url: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_UNCHANGED)
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def test_page_embeds_the_stores_values(viewed, tmp_path):
    out = tmp_path / "page"
    assert "page written to" in view([viewed, "-o", str(out), "--episodes", "0,2-3", "--max-frames", "10"])
    overview, episodes = page_data(out)
    s = open_store(viewed)
    ep = s.episodes()
    assert overview["rows"] == s.rows and overview["episodes"] == 4 and overview["env"] == s.env
    assert sum(overview["returns"]["hist"]["counts"]) == 4 and sum(overview["lengths"]["hist"]["counts"]) == 4
    assert overview["ends"] == {"terminated": 4, "truncated": 0}  # every CueMemory episode ends at its query
    assert [e["name"] for e in overview["embeddings"]] == ["downsample"]
    assert overview["embeddings"][0]["encoder"] == s.embedding_meta("downsample")["encoder"]
    assert overview["integrity"]["sealed"] is False and overview["missing"] == []
    assert sorted(episodes) == [0, 2, 3]
    for e, d in episodes.items():
        a, n = int(ep["start"][e]), int(ep["length"][e]) + 1
        for k in ("action", "reward", "terminated", "truncated"):
            assert d[k] == s.read(k, a, a + n).tolist(), (e, k)
        assert d["return"] == float(ep["return"][e]) and d["end"] == "terminated"
        steps = np.array(d["frame_steps"])
        assert (
            len(steps) <= 10 and steps[0] == 0 and steps[-1] == n - 1
        )  # the final observation is always shown
        for k, step in enumerate(steps):
            np.testing.assert_array_equal(png(d["gray"][k]), s.read("obs", a + step, a + step + 1)[0])
            np.testing.assert_array_equal(png(d["rgb"][k]), s.read("frame", a + step, a + step + 1)[0])
        v, emb = d["embeddings"]["downsample"], s.read("embeddings/downsample", a, a + n).astype(np.float32)
        sim = np.frombuffer(base64.b64decode(v["sim"]), np.uint8).reshape(n, n)  # 33 rows < --sim-steps 256
        codes, lo, hi = quantize(cosine_similarity(emb))
        np.testing.assert_array_equal(sim, codes)
        assert v["sim_range"] == [lo, hi] and -1 <= lo < hi <= 1 and codes.min() == 0 and codes.max() == 255
        assert np.asarray(v["proj"]).shape == (n, 2)


def test_streamed_rows_and_math_equal_naive_loops(viewed):
    s = open_store(viewed)
    steps = shown_steps(33, 7)
    want = s.read("frame", 33, 66)[steps]
    got = np.stack(list(shown_rows(s, "frame", 33, steps, budget=64 * 64 * 3 * 8)))  # one chunk per block
    np.testing.assert_array_equal(got, want)
    for n, limit in [(1, 5), (5, 5), (6, 5), (1000, 100), (33, 256)]:
        st = shown_steps(n, limit)
        assert len(st) <= limit and st[0] == 0 and st[-1] == n - 1 and np.all(np.diff(st) > 0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 5)).astype(np.float32)
    x[3] = 0
    naive = np.zeros((9, 9), np.float32)
    for i in range(9):
        for j in range(9):
            d = np.linalg.norm(x[i]) * np.linalg.norm(x[j])
            naive[i, j] = 0 if d == 0 else float(np.dot(x[i], x[j])) / d
    np.testing.assert_allclose(cosine_similarity(x), naive, atol=1e-6)
    proj, explained = project_2d(x)
    cov = np.cov((x - x.mean(0)).T)
    w, vec = np.linalg.eigh(cov)
    for k in range(2):  # each component equals the covariance's top eigenvectors, up to sign
        ref = (x - x.mean(0)) @ vec[:, -1 - k]
        assert np.allclose(proj[:, k], ref, atol=1e-4) or np.allclose(proj[:, k], -ref, atol=1e-4)
        assert explained[k] == pytest.approx(w[-1 - k] / w.sum(), rel=1e-6)
    q, lo, hi = quantize(np.array([[0.5, 0.75], [1.0, 0.5]]))
    assert (lo, hi) == (0.5, 1.0) and q.tolist() == [[0, 128], [255, 0]]  # round(0.5 * 255) = 128
    assert quantize(np.ones((2, 2)))[0].tolist() == [[0, 0], [0, 0]]
    h = histogram(np.array([-21, -20, -20, -19]))
    assert h["counts"] == [1, 2, 1] and h["edges"] == [-21.5, -20.5, -19.5, -18.5]


def test_zip_store_and_default_selection(viewed, tmp_path, monkeypatch):
    zipped = str(tmp_path / "cue.zip")
    pack(PackConfig(store=viewed, output=zipped))
    monkeypatch.chdir(tmp_path)
    view([zipped])  # default output ./cue.view
    overview, episodes = page_data(tmp_path / "cue.view")
    ret = open_store(viewed).episodes()["return"]
    assert sorted(episodes) == sorted({0, 3, int(np.argmax(ret)), int(np.argmin(ret))})
    assert overview["kind"] == "zip" and overview["integrity"]["sealed"]  # a pack is always sealed
    assert all(a["current"] for a in overview["integrity"]["arrays"].values())
    view([zipped, "--episodes", "1"])  # an earlier page is replaced, its episode files too
    assert sorted(page_data(tmp_path / "cue.view")[1]) == [1]
    assert [p.name for p in (tmp_path / "cue.view" / "episodes").iterdir()] == ["000001.js"]
    (tmp_path / "cue.view" / "index.html").unlink()  # as an interrupted write leaves it: still replaceable
    view([zipped, "--episodes", "2"])
    assert sorted(page_data(tmp_path / "cue.view")[1]) == [2]


def test_store_without_frames_says_what_is_missing(tmp_path):
    path = str(tmp_path / "gray.zarr")
    collect(CollectConfig("rise/CueMemory-v0", path, episodes=1, num_envs=1, frames=False, progress=False))
    view([path, "-o", str(tmp_path / "p")])
    overview, episodes = page_data(tmp_path / "p")
    assert any("no RGB frames" in m for m in overview["missing"])
    assert any("no embeddings" in m for m in overview["missing"])
    assert episodes[0]["rgb"] is None and len(episodes[0]["gray"]) == 33 and episodes[0]["embeddings"] == {}


def test_bad_input_one_line(viewed, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "not a readable Zarr" in one_line_error([str(plain)])
    assert "does not exist" in one_line_error([str(tmp_path / "nowhere.zarr")])
    env = open_store(viewed).env
    create_store(tmp_path / "empty.zarr", env, (84, 84), None)
    assert "empty (0 rows)" in one_line_error([str(tmp_path / "empty.zarr")])
    assert "has no episode 9 (it has 4: 0-3)" in one_line_error([viewed, "--episodes", "1,9"])
    assert "ranges like 0,3,5-9" in one_line_error([viewed, "--episodes", "x"])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert "not a page rise-data view wrote" in one_line_error([viewed, "-o", str(tmp_path / "taken")])
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    assert "--max-frames" in one_line_error([viewed, "--max-frames", "1"])


def test_serve_binds_loopback_only(viewed, tmp_path):
    view([viewed, "-o", str(tmp_path / "p"), "--episodes", "0"])
    server = make_server(tmp_path / "p", 0)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
            assert r.status == 200 and b"window.RISE_VIEW" in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/episodes/000000.js", timeout=10) as r:
            assert r.read().startswith(b"riseEpisode(")
    finally:
        server.shutdown()
        server.server_close()
    busy = make_server(tmp_path / "p", 0)
    try:
        with pytest.raises(ValueError, match="choose another --port"):
            make_server(tmp_path / "p", busy.server_address[1])
    finally:
        busy.server_close()


@pytest.mark.slow
def test_s3_store(viewed, tmp_path, s3):
    root = Path(viewed)
    # a prefix of its own: moto's in-process buckets outlive each server, and a chunk zarr never wrote
    # (all fill value) would otherwise be read from another test's store under the same key
    for p in root.rglob("*"):
        if p.is_file():
            s3.upload_file(str(p), "rise-data", f"view/cue.zarr/{p.relative_to(root).as_posix()}")
    view(["s3://rise-data/view/cue.zarr", "-o", str(tmp_path / "p"), "--episodes", "1"])
    overview, episodes = page_data(tmp_path / "p")
    s = open_store(viewed)
    a, n = int(s.episodes()["start"][1]), int(s.episodes()["length"][1]) + 1
    assert overview["kind"] == "url" and episodes[1]["action"] == s.read("action", a, a + n).tolist()
    np.testing.assert_array_equal(png(episodes[1]["rgb"][-1]), s.read("frame", a + n - 1, a + n)[0])


@pytest.fixture(scope="module")
def run_dir(viewed, tmp_path_factory) -> str:
    """A real run directory: a short offline rise-agent train on the CueMemory store, evaluated at its end."""
    from rise_agent.cli import app as agent

    path = str(tmp_path_factory.mktemp("run") / "run")
    args = ["train", "--run-dir", path, "--store", viewed, "--updates", "30", "--log-every", "10"]
    out = runner.invoke(agent, [*args, "--batch-size", "16", "--eval-episodes", "1", "-q"])
    assert out.exit_code == 0, out.output
    return path


def run_page(folder: Path) -> dict:
    html = (folder / "index.html").read_text()
    head = "window.RISE_RUN = "
    return json.loads(html[html.index(head) + len(head) : html.index(";</script>", html.index(head))])


@pytest.mark.slow
def test_run_directory_page(run_dir, viewed, tmp_path):
    import csv

    from rise_data.view.run import recorded_store

    view([run_dir, "-o", str(tmp_path / "p")])
    data = run_page(tmp_path / "p")
    with open(Path(run_dir) / "train.csv", newline="") as f:
        train = list(csv.DictReader(f))
    assert data["logs"]["train"]["rows"] == len(train) == 3 and data["checkpoint"]
    assert data["logs"]["train"]["columns"]["loss"] == [float(r["loss"]) for r in train]
    assert data["logs"]["eval"]["rows"] == 1 and "mean" in data["logs"]["eval"]["columns"]
    assert data["recorded"] is None and "recorded_page" not in data  # an offline run records no episodes
    # a run that saved its online episodes (save_store) links the store page of the last one
    assert recorded_store(Path(run_dir), {"save_store": viewed}) == viewed
    assert recorded_store(Path(run_dir), {"store": viewed, "write_back": False}) is None
