"""The learner update at the cue recipe's sizes on a CPU: the landed head's learner against this tree's, one run.

Sizes (pipelines/learning.py, ``cue``): batch 32, Impala channels 4,8,8 on 16x16 frames (frame stack 4), pool 4,
hidden 64, LSTM 64, 32 cosines, 3 actions, 256-d ``downsample`` embeddings, K = 0 and K = 16; one torch thread.
The head's learner runs from its own tree (``git archive`` of rise_agent and rise_data at ``--rev``) in a child
process, so its network and losses are the head's too. Every row has its own worker; the workers are timed in
turns, so a change of load falls on all rows alike. Printed per K and path: wall and thread-CPU ms per update
(medians over the turns), the speed-up (median of the turns' head ms / row ms), aten ops per update
(torch.profiler, nested ones counted; ``top``: top-level only) and the first step's seconds (build and compile).
The ``floor`` row times only the convolutions, pools and LSTM an update runs (see :func:`floor_step`): what no
rewrite of the update's Python can remove.
``eager`` is the default update (NHWC convolutions on the CPU), ``nchw`` the same in NCHW (the default before),
``compile_cpp`` compiles with inductor's C++ wrapper (the kernels called from C++, not Python),
``compile_autotune`` with max_autotune. Set TORCHINDUCTOR_CACHE_DIR to a fresh folder for a
cold compile.
Ends with one JSON line of ``ratios``: update_speedup_k{K} for the default path, ..._{path} for the others.
Usage: OMP_NUM_THREADS=1 python benchmarks/learner_speed.py [--rev 3be2990] [--rounds 7] [--seconds 1]
       [--paths eager,nchw,compile] [--ks 0,16]
"""

from __future__ import annotations

import argparse
import functools
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
# this tree's paths: LearnerConfig fields over the defaults
PATHS = {
    "eager": {"compile": False},  # the defaults: NHWC on the CPU
    "nchw": {"channels_last": False},
    "compile": {"compile": True},
    "compile_cpp": {"compile": True},
    "compile_autotune": {"compile": True},
}
# inductor settings a path compiles under (scoped to its first step, where the compile happens)
INDUCTOR = {
    "compile_cpp": {"cpp_wrapper": True},
    "compile_autotune": {"max_autotune": True},
}


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
    ``learner``; ``mode`` "steps" (``batches``, ``seed``, ``init``: metrics, priorities, weights, see
    :func:`work`) or "time" (see :func:`serve`); ``inductor``: inductor config the first step runs under."""
    return {"net": {**RECIPE_NET, "context_len": k}, "learner": learner, "mode": mode, **kw}


def _learner(spec: dict):
    import torch

    from rise_agent.learner import Learner, LearnerConfig
    from rise_agent.network import NetworkConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return Learner(NetworkConfig(**spec["net"]), LearnerConfig(**spec["learner"]), "cpu")


def work(spec: dict) -> dict:
    """Run a "steps" ``spec`` with whichever rise_agent is importable: the head's in a child, this tree's here."""
    import torch

    learner = _learner(spec)
    if spec.get("init") is not None:
        learner.online.load_state_dict(spec["init"])
        learner.target.load_state_dict(spec["init"])
    torch.manual_seed(spec["seed"])
    out = [learner.step(b) for b in spec["batches"]]
    return {"steps": out, "weights": {n: p.detach().clone() for n, p in learner.online.named_parameters()}}


def floor_step(k: int):
    """The kernels no rewrite of the update's Python removes, at the recipe's sizes: the CNN's convolutions and
    pools (no spectral norm) forward and backward plus their no-grad forward (the target's), and at K > 0 the
    context LSTM likewise. Returns a step function."""
    import torch

    from rise_agent.network import NetworkConfig, default_channels_last, make_network

    torch.set_num_threads(1)
    net = make_network(NetworkConfig(**{**RECIPE_NET, "context_len": k, "spectral_norm": False}))
    net.set_layout(default_channels_last(torch.device("cpu")), 0, None)  # the default update's layout
    b = make_batch(k)
    context = b.context.float() if k else None

    def step() -> None:
        with torch.no_grad():
            net.cnn(b.next_frames)
            if k:
                net.context.lstm(context)
        out = net.cnn(b.frames).sum()
        if k:
            out = out + net.context.lstm(context)[0][:, -1].sum()
        out.backward()

    return step


def serve() -> None:
    """A timing worker: one JSON request a line on stdin ({"setup": spec} or {"time": seconds}), one JSON
    answer a line on stdout. Setup answers the first step's time (compile included) and the op counts."""
    step = None
    for line in sys.stdin:
        req = json.loads(line)
        if "floor" in req:
            step = floor_step(req["floor"])
            step()
            answer = {"first_s": 0.0, "ops": 0, "top": 0}
        elif "setup" in req:
            import torch._inductor.config as inductor

            t0 = time.perf_counter()
            learner = _learner(req["setup"])
            batch = make_batch(req["setup"]["net"]["context_len"])
            step = functools.partial(learner.step, batch)
            with inductor.patch(req["setup"].get("inductor", {})):
                step()
            first = time.perf_counter() - t0
            for _ in range(5):
                step()
            answer = {"first_s": first, **op_counts(learner, batch)}
        else:
            answer = timed(step, req["time"])
        print(json.dumps(answer), flush=True)


def timed(fn, seconds: float) -> dict:
    """Wall and thread-CPU ms per call over at least 10 calls and ``seconds``."""
    n, t0, c0 = 0, time.perf_counter(), time.thread_time()
    while n < 10 or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return {"ms": (time.perf_counter() - t0) / n * 1e3, "cpu_ms": (time.thread_time() - c0) / n * 1e3}


def op_counts(learner, batch) -> dict:
    """aten ops of one update: all (nested counted) and top-level, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        learner.step(batch)
    aten = [e for e in prof.events() if e.name.startswith("aten::")]
    return {"ops": len(aten), "top": sum(1 for e in aten if e.cpu_parent is None)}


class Worker:
    """A :func:`serve` child importing rise_agent from ``tree``."""

    def __init__(self, tree: Path, setup: dict) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, __file__, "--serve"]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.setup = self.ask(setup)

    def ask(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.proc.wait()}")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def measure(k: int, tree: Path, paths: list[str], rounds: int, seconds: float) -> dict:
    """Rows for one K: the head and each path in its own worker, timed in turns (``rounds`` x ``seconds``
    each) so that load changes fall on all of them alike; medians over the rounds."""
    specs = {"head": (tree, {})} | {p: (ROOT, PATHS[p]) for p in paths}
    workers = {
        name: Worker(where, {"setup": job(k, cfg, "time", inductor=INDUCTOR.get(name, {}))})
        for name, (where, cfg) in specs.items()
    }
    workers["floor"] = Worker(ROOT, {"floor": k})
    times: dict = {name: [] for name in workers}
    try:
        for _ in range(rounds):
            for name, w in workers.items():
                times[name].append(w.ask({"time": seconds}))
    finally:
        for w in workers.values():
            w.close()
    rows = {}
    for name, w in workers.items():
        rows[name] = {
            "ms": _median([t["ms"] for t in times[name]]),
            "cpu_ms": _median([t["cpu_ms"] for t in times[name]]),
            **w.setup,
        }
        rows[name]["speedup"] = _median(
            [h["ms"] / t["ms"] for h, t in zip(times["head"], times[name], strict=True)]
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default=HEAD, help="the revision whose learner is the baseline")
    ap.add_argument("--rounds", type=int, default=7, help="timing turns per row")
    ap.add_argument("--seconds", type=float, default=1.0, help="seconds per row and turn")
    ap.add_argument(
        "--paths",
        default="eager,nchw,compile",
        help=f"this tree's paths, comma-separated: {', '.join(PATHS)}",
    )
    ap.add_argument("--ks", default="0,16")
    a = ap.parse_args(argv)
    tree = head_tree(a.rev)
    ks, paths = [int(x) for x in a.ks.split(",")], a.paths.split(",")
    load0 = os.getloadavg()[0]
    rows = {k: measure(k, tree, paths, a.rounds, a.seconds) for k in ks}
    print(
        f"cpu ({os.cpu_count()} cores), 1 torch thread, load {load0:.2f} -> {os.getloadavg()[0]:.2f}; head {a.rev}"
    )
    print(
        f"{'K':>3} {'path':<16} {'ms/update':>10} {'cpu ms':>8} {'speedup':>8} {'aten ops':>9} {'top ops':>8} {'1st step s':>11}"
    )
    for k in ks:
        for name, r in rows[k].items():
            print(
                f"{k:>3} {name:<16} {r['ms']:>10.2f} {r['cpu_ms']:>8.2f} {r['speedup']:>8.2f} {r['ops']:>9} "
                f"{r['top']:>8} {r['first_s']:>11.2f}"
            )
    default = "compile" if "compile" in paths and _default_compiled() else "eager"
    ratios = {}
    for k in ks:
        for path in paths:
            ratios[f"update_speedup_k{k}" + ("" if path == default else f"_{path}")] = round(
                rows[k][path]["speedup"], 3
            )
    print(json.dumps({"ratios": ratios, "load": round(os.getloadavg()[0], 2), "rev": a.rev}))
    return rows


def _default_compiled() -> bool:
    from rise_agent.learner import LearnerConfig

    return LearnerConfig().compile


if __name__ == "__main__":
    if sys.argv[1:2] in (["--worker"], ["--serve"]):  # rise_agent from PYTHONPATH, not this folder
        sys.path = [p for p in sys.path if Path(p).resolve() != Path(__file__).resolve().parent]
    if sys.argv[1:2] == ["--worker"]:
        result = [work(spec) for spec in pickle.loads(Path(sys.argv[2]).read_bytes())]
        Path(sys.argv[3]).write_bytes(pickle.dumps(result))
    elif sys.argv[1:2] == ["--serve"]:
        serve()
    else:
        main()
