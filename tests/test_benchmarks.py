"""benchmarks/gpu.py --smoke: every section runs on CPU at toy sizes and writes its JSON (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_smoke_runs_every_section(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads((tmp_path / "gpu.json").read_text())
    sections = ("learner_step", "lstm", "encode", "actor", "replay", "threads", "online")
    errors = {k: out[k]["error"] for k in sections if "error" in out[k]}
    assert not errors, errors
    step = out["learner_step"]
    for k in (0, out["sizes"]["k"]):
        for variant in ("fp32", "bf16", "gpu_paths", "graph", "graph_gpu_paths"):
            row = step[f"k{k}_{variant}"]
            assert row["ms"] > 0 and row["kernels"] > 0 and row["syncs"] >= 0
    assert out["online"]["frames_per_s"] > 0 and out["online"]["updates"] > 0
    assert out["encode"]["ratio"] > 0 and out["replay"]["sample_prefetch_ms"] > 0
    last = json.loads(proc.stdout.strip().splitlines()[-1])  # the one JSON line of ratios
    assert set(last) == {"ratios", "machine"} and last["ratios"]["online_frames_per_s"] > 0
