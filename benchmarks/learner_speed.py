"""The learner update at the cue recipe's sizes on a CPU: the landed head's learner against this tree's, one run.

Sizes (pipelines/learning.py, ``cue``): batch 32, Impala channels 4,8,8 on 16x16 frames (frame stack 4), pool 4,
hidden 64, LSTM 64, 32 cosines, 3 actions, 256-d ``downsample`` embeddings, K = 0 and K = 16; one torch thread.
The head's learner runs from its own tree (``git archive`` of rise_agent and rise_data at ``--rev``) in a child
process, so its network and losses are the head's too. Printed per K and path: ms per update, aten ops per update
(torch.profiler, nested ones counted; ``top`` = top-level only) and, for compiled paths, the first step's time
(compile included). Ends with one JSON line: ``ratios`` = head ms / new ms.
Usage: OMP_NUM_THREADS=1 python benchmarks/learner_speed.py [--rev 3be2990] [--seconds 5] [--paths eager,compile]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
HEAD = "3be2990"  # the head before the pure loss() and the compiled update
RECIPE_NET = dict(
    n_actions=3, frame_stack=4, frame_hw=(16, 16), impala_channels=(4, 8, 8), pool_size=4, hidden=64,
    lstm_hidden=64, n_cos=32, embed_dim=256,
)  # fmt: skip
BATCH = 32


def head_tree(rev: str) -> Path:
    """rise_agent and rise_data as they were at ``rev``, in a fresh folder (put it first on PYTHONPATH)."""
    out = Path(tempfile.mkdtemp(prefix=f"rise-{rev}-"))
    archive = subprocess.run(
        ["git", "archive", rev, "rise_agent", "rise_data"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def run_at(tree: Path, jobs: list[dict]) -> list[dict]:
    """``jobs`` (see :func:`work`) run in one child process that imports rise_agent from ``tree``."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "job.pkl", Path(tmp) / "out.pkl"
        src.write_bytes(pickle.dumps(jobs))
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", str(src), str(dst)],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the learner at {tree} failed:\n{proc.stderr[-3000:]}")
        return pickle.loads(dst.read_bytes())


def make_batch(k: int, b: int = BATCH, seed: int = 0) -> SimpleNamespace:
    """A fixed replay batch at the recipe's sizes (context fp16, left-padded masks), plain CPU tensors."""
    import numpy as np
    import torch

    g = torch.Generator().manual_seed(seed)
    n, d, (h, w) = RECIPE_NET["n_actions"], RECIPE_NET["embed_dim"], RECIPE_NET["frame_hw"]

    def ctx():
        if k == 0:
            return None, None
        valid = torch.randint(1, k + 1, (b,), generator=g)
        mask = torch.arange(k)[None, :] >= (k - valid)[:, None]
        return (torch.randn(b, k, d, generator=g) * mask[..., None]).half(), mask

    (c, m), (nc, nm) = ctx(), ctx()
    return SimpleNamespace(
        frames=torch.randint(0, 256, (b, 4, h, w), dtype=torch.uint8, generator=g),
        context=c,
        mask=m,
        action=torch.randint(0, n, (b,), generator=g),
        returns=torch.randn(b, generator=g),
        discount=torch.where(torch.rand(b, generator=g) < 0.25, 0.0, 0.997**3),
        next_frames=torch.randint(0, 256, (b, 4, h, w), dtype=torch.uint8, generator=g),
        next_context=nc,
        next_mask=nm,
        weights=torch.rand(b, generator=g) + 0.5,
        index=np.arange(b, dtype=np.int64),
    )


def job(k: int, learner: dict, mode: str, **kw) -> dict:
    """A worker's job: the network at the recipe's sizes with ``context_len=k``, LearnerConfig fields
    ``learner``; ``mode`` "steps" (``batches``, ``seed``, ``init``: metrics, priorities, weights) or "time"."""
    return {"net": {**RECIPE_NET, "context_len": k}, "learner": learner, "mode": mode, **kw}


def work(spec: dict) -> dict:
    """Run ``spec`` with whichever rise_agent is importable: the head's in a child, this tree's here."""
    import torch

    from rise_agent.learner import Learner, LearnerConfig
    from rise_agent.network import NetworkConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    learner = Learner(NetworkConfig(**spec["net"]), LearnerConfig(**spec["learner"]), "cpu")
    if spec["mode"] == "steps":
        if spec.get("init") is not None:
            learner.online.load_state_dict(spec["init"])
            learner.target.load_state_dict(spec["init"])
        torch.manual_seed(spec["seed"])
        out = [learner.step(b) for b in spec["batches"]]
        return {
            "steps": out,
            "weights": {n: p.detach().clone() for n, p in learner.online.named_parameters()},
        }
    b = make_batch(spec["net"]["context_len"])
    learner.step(b)
    first = time.perf_counter() - t0
    return {"first_s": first, "ms": timed(lambda: learner.step(b), spec["seconds"]), **op_counts(learner, b)}


def timed(fn, seconds: float) -> float:
    """ms per call: 5 warm-up calls, then at least 20 calls and ``seconds`` of them."""
    for _ in range(5):
        fn()
    n, t0 = 0, time.perf_counter()
    while n < 20 or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n * 1e3


def op_counts(learner, batch) -> dict:
    """aten ops of one update: all (nested counted) and top-level, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        learner.step(batch)
    aten = [e for e in prof.events() if e.name.startswith("aten::")]
    return {"ops": len(aten), "top": sum(1 for e in aten if e.cpu_parent is None)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default=HEAD, help="the revision whose learner is the baseline")
    ap.add_argument("--seconds", type=float, default=5.0, help="timed seconds per row")
    ap.add_argument(
        "--paths", default="eager,compile", help="this tree's paths: eager (compile=False), compile"
    )
    ap.add_argument("--ks", default="0,16")
    a = ap.parse_args(argv)
    tree = head_tree(a.rev)
    rows: dict = {}
    for k in (int(x) for x in a.ks.split(",")):
        (rows[f"k{k}_head"],) = run_at(tree, [job(k, {}, "time", seconds=a.seconds)])
        for path in a.paths.split(","):
            spec = job(k, {"compile": path == "compile"}, "time", seconds=a.seconds)
            (rows[f"k{k}_{path}"],) = run_at(ROOT, [spec])
    print(f"cpu ({os.cpu_count()} cores), 1 torch thread, load {os.getloadavg()[0]:.2f}; head {a.rev}")
    print(f"{'row':<16} {'ms/update':>10} {'aten ops':>9} {'top ops':>8} {'first step s':>13}")
    for name, r in rows.items():
        print(f"{name:<16} {r['ms']:>10.2f} {r['ops']:>9} {r['top']:>8} {r['first_s']:>13.2f}")
    ratios = {}
    for k in (int(x) for x in a.ks.split(",")):
        for path in a.paths.split(","):
            key = f"update_speedup_k{k}" + ("" if path == "compile" else f"_{path}")
            ratios[key] = round(rows[f"k{k}_head"]["ms"] / rows[f"k{k}_{path}"]["ms"], 3)
    print(json.dumps({"ratios": ratios, "load": round(os.getloadavg()[0], 2), "rev": a.rev}))
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        sys.path = [p for p in sys.path if Path(p).resolve() != Path(__file__).resolve().parent]
        result = [work(spec) for spec in pickle.loads(Path(sys.argv[2]).read_bytes())]
        Path(sys.argv[3]).write_bytes(pickle.dumps(result))
    else:
        main()
