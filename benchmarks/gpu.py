"""One prepared GPU benchmark: every hot path of online RISE, timed in one run, written as JSON.

Sections (each a dict in the output; a section that fails records its error and the run goes on):

- ``learner_step``: ``Learner.step`` at K=0 and K=80, fp32 / bf16 / the GPU paths (TF32 + channels_last +
  LSTM fp16 in chunks + target forward on a second stream): ms per step, kernels per step (CUDA kernel
  launches, or aten ops on CPU, from torch.profiler) and host syncs per step (cudaStreamSynchronize /
  cudaDeviceSynchronize / device->host copies), ``first_s`` (the first step: build, capture or compile);
  ``rise_over_btr`` per variant; ``graph`` rows capture the whole update as one CUDA graph
  (``LearnerConfig.cuda_graph``; on CPU the same static-buffer path, eager); ``compiled`` rows run the whole
  update through torch.compile (``LearnerConfig.compile``; full size only: compiling takes minutes on a CPU);
  ``over_fp32_{variant}``: each variant's ms over the eager fp32 step's.
- ``lstm``: the context LSTM alone (B x K x 512 -> 512, forward + backward): fp32, fp16, fp16 in chunks of
  128 sequences.
- ``encode``: ResNet18 (random init: nothing is downloaded) through the frozen-encoder path (uint8 RGB
  frames in, preprocessing, fp32) against the model alone on preprocessed input; ``ratio`` = model / path.
- ``actor``: ``Actor.greedy`` (noise, forward, argmax) and ``Actor.observe`` (frames + embedding) for E envs.
- ``replay``: ``Replay.sample`` (batch B, K=80) and ``Replay.add`` on a wrapped ring, eager and prefetch.
- ``threads``: an actor thread acting while the learner steps, on the default stream vs the actor on its own
  high-priority stream (CUDA; on CPU both rows are the same path); ms per learner step with acting alongside.
- ``online``: the real online loop (``rise_agent.training.online.run_online``) on Pong x E at K=80:
  frames/s and overlapped / max(acting, learning).

Full size takes at most ~8 minutes on one H200 (E=64, B=256, ResNet18 encoder, BTR's network).
``--smoke`` runs every section on CPU at toy sizes in under a minute (tests/test_benchmarks.py).
Usage: python benchmarks/gpu.py [--out DIR] [--smoke] [--device auto]   (JSON: DIR/gpu.json, DIR=$OUT)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learner_step import batch as synthetic_batch  # noqa: E402
from prefetch import fill  # noqa: E402

from rise_agent.learner import Learner, LearnerConfig  # noqa: E402
from rise_agent.network import NetworkConfig  # noqa: E402
from rise_agent.replay import Replay, ReplayConfig  # noqa: E402
from rise_data.encode import resolve_device  # noqa: E402

SMALL = {"impala_channels": (4, 8, 8), "hidden": 16, "lstm_hidden": 16}
# compile: the compiled update's rows (left out of the smoke run: compiling takes minutes on a CPU)
FULL = dict(batch=256, k=80, dim=512, envs=64, rows=2048, steps=300, seconds=2.0, encoder="resnet18", net={},
            compile=True)  # fmt: skip
SMOKE = dict(batch=8, k=8, dim=16, envs=4, rows=64, steps=12, seconds=0.05, encoder="downsample", net=SMALL,
             compile=False)  # fmt: skip


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, seconds: float, min_reps: int = 3) -> float:
    """ms per call after warm-up, at least ``min_reps`` calls and ``seconds`` of them."""
    for _ in range(2):
        fn()
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while n < min_reps or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    _sync(device)
    return (time.perf_counter() - t0) / n * 1e3


def profile_counts(fn, device) -> dict:
    """Kernels (CUDA launches, else top-level aten ops) and host syncs of one call."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        _sync(device)
    events = prof.events()
    if device.type == "cuda":
        kernels = sum(
            1 for e in events if e.name in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC")
        )
    else:
        kernels = sum(1 for e in events if e.name.startswith("aten::") and e.cpu_parent is None)
    sync_names = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
    syncs = sum(1 for e in events if e.name in sync_names)
    dtoh = sum(1 for e in events if "Memcpy DtoH" in e.name or e.name == "aten::_local_scalar_dense")
    return {"kernels": kernels, "syncs": syncs, "device_to_host": dtoh}


# -- sections ----------------------------------------------------------------------------------------------
def learner_step(device, s: dict) -> dict:
    variants = {
        "fp32": LearnerConfig(),
        "bf16": LearnerConfig(precision="bf16"),
        "graph": LearnerConfig(cuda_graph=True),
        "graph_gpu_paths": LearnerConfig(
            cuda_graph=True, tf32=True, channels_last=True, lstm_chunk=128, lstm_half=True
        ),
        "gpu_paths": LearnerConfig(
            tf32=True, channels_last=True, lstm_chunk=128, lstm_half=True, target_stream=True
        ),
    }
    if s["compile"]:
        variants["compiled"] = LearnerConfig(compile=True)
    out: dict = {}
    for k in (0, s["k"]):
        net = NetworkConfig(n_actions=6, context_len=k, embed_dim=s["dim"], **s["net"])
        b = synthetic_batch(s["batch"], k, s["dim"], 6, device)
        for name, cfg in variants.items():
            t0 = time.perf_counter()
            learner = Learner(net, cfg, device)
            learner.step(b)
            _sync(device)
            first = time.perf_counter() - t0
            ms = timed(lambda learner=learner, b=b: learner.step(b), device, s["seconds"])
            out[f"k{k}_{name}"] = {
                "ms": round(ms, 3),
                "first_s": round(first, 2),
                **profile_counts(lambda learner=learner, b=b: learner.step(b), device),
            }
    for name in variants:
        out[f"rise_over_btr_{name}"] = round(out[f"k{s['k']}_{name}"]["ms"] / out[f"k0_{name}"]["ms"], 3)
        for k in (0, s["k"]):
            out[f"k{k}_over_fp32_{name}"] = round(out[f"k{k}_{name}"]["ms"] / out[f"k{k}_fp32"]["ms"], 3)
    return out


def lstm(device, s: dict) -> dict:
    lstm = torch.nn.LSTM(s["dim"], s["dim"], batch_first=True).to(device)
    x = torch.randn(s["batch"], s["k"], s["dim"], device=device)
    half = device.type == "cuda"

    def run(dtype, chunk):
        with torch.autocast(device.type, dtype=torch.float16, enabled=dtype == torch.float16 and half):
            outs = [lstm(c)[0][:, -1] for c in x.split(chunk)]
        torch.cat(outs).float().sum().backward()

    out = {"fp32": timed(lambda: run(torch.float32, len(x)), device, s["seconds"])}
    if half:
        out["fp16"] = timed(lambda: run(torch.float16, len(x)), device, s["seconds"])
        out["fp16_chunks_128"] = timed(lambda: run(torch.float16, 128), device, s["seconds"])
    return {k: round(v, 3) for k, v in out.items()} | {"batch": s["batch"], "k": s["k"]}


def encode(device, s: dict) -> dict:
    from rise_data.encode.encoders import make_encoder

    name = s["encoder"]
    enc = make_encoder(name, **({"weights": "untrained"} if name == "resnet18" else {})).to(device)
    frames = torch.randint(0, 256, (s["envs"], 210, 160, 3), dtype=torch.uint8)
    pre = enc.preprocess(frames.to(device))
    with torch.no_grad():
        path = timed(lambda: enc(frames), device, s["seconds"])
        model = timed(lambda: enc.model(pre), device, s["seconds"])
    return {
        "encoder": name,
        "rows": s["envs"],
        "path_ms": round(path, 3),
        "model_ms": round(model, 3),
        "ratio": round(model / path, 3),
    }


def _actor(device, s: dict, k: int):
    from rise_agent.acting.actor import Actor
    from rise_agent.acting.thread import actor_copy
    from rise_agent.network import make_network
    from rise_data.encode.encoders import make_encoder
    from rise_data.envs import Step

    name = s["encoder"]
    enc = make_encoder(name, **({"weights": "untrained"} if name == "resnet18" else {})).to(device)
    net = NetworkConfig(n_actions=6, context_len=k, embed_dim=enc.dim, **s["net"])
    actor = Actor(actor_copy(make_network(net).to(device)), enc, s["envs"], device=device)
    rng = np.random.default_rng(0)
    e = s["envs"]
    z = np.zeros(e, bool)

    def step(first):
        obs = rng.integers(0, 256, (e, 84, 84), dtype=np.uint8)
        frame = rng.integers(0, 256, (e, 210, 160, 3), dtype=np.uint8)
        return Step(obs, frame, np.zeros(e, np.float32), z, z, np.full(e, first))

    actor.observe(step(True))
    return actor, step


def actor(device, s: dict) -> dict:
    act, step = _actor(device, s, s["k"])
    later = step(False)
    greedy = timed(lambda: act.greedy(), device, s["seconds"])
    observe = timed(lambda: act.observe(later), device, s["seconds"])
    return {"envs": s["envs"], "k": s["k"], "greedy_ms": round(greedy, 3), "observe_ms": round(observe, 3)}


def replay(device, s: dict) -> dict:
    out = {}
    for pre in (False, True):
        cfg = ReplayConfig(capacity=s["envs"] * s["rows"], prefetch=pre)
        net = NetworkConfig(n_actions=6, context_len=s["k"], embed_dim=s["dim"])
        rp = Replay(cfg, (84, 84), s["dim"], s["envs"], device, network=net)
        fill(rp, s["envs"], s["rows"] + 10, s["dim"])
        rng = np.random.default_rng(0)
        key = "prefetch" if pre else "eager"
        out[f"sample_{key}_ms"] = round(
            timed(lambda rp=rp, rng=rng: rp.sample(s["batch"], rng), device, s["seconds"]), 3
        )
    t0 = time.perf_counter()
    fill(rp, s["envs"], 20, s["dim"], seed=5)  # wrapped: every add invalidates old rows
    out["add_ms_incl_data"] = round((time.perf_counter() - t0) / 20 * 1e3, 3)
    return out


def threads(device, s: dict) -> dict:
    """ms per learner step while an actor thread acts, shared default stream vs its own stream."""
    act, _ = _actor(device, s, s["k"])
    net = NetworkConfig(
        n_actions=6, context_len=s["k"], embed_dim=act.encoder.dim if act.encoder else s["dim"], **s["net"]
    )
    learner = Learner(net, LearnerConfig(), device)
    b = synthetic_batch(s["batch"], s["k"], net.embed_dim, 6, device)
    out = {"learner_alone_ms": round(timed(lambda: learner.step(b), device, s["seconds"]), 3)}
    for mode in ("shared", "separate"):
        stop = threading.Event()
        acted = [0]

        def acting(mode=mode, stop=stop, acted=acted):
            stream = (
                torch.cuda.Stream(device, priority=-1)
                if (mode == "separate" and device.type == "cuda")
                else None
            )
            while not stop.is_set():
                if stream is not None:
                    with torch.cuda.stream(stream):
                        act.greedy()
                    stream.synchronize()
                else:
                    act.greedy()
                acted[0] += 1

        th = threading.Thread(target=acting, daemon=True)
        th.start()
        ms = timed(lambda: learner.step(b), device, s["seconds"])
        stop.set()
        th.join()
        out[f"{mode}_ms"] = round(ms, 3)
        out[f"{mode}_acts"] = acted[0]
    return out


def online(device, s: dict) -> dict:
    from online import online_run

    from rise_agent.config import TrainConfig

    e, steps = s["envs"], s["steps"]
    base = TrainConfig(
        env="ALE/Pong-v5", encoder=s["encoder"], weights="untrained" if s["encoder"] == "resnet18" else None,
        num_envs=e, replay_ratio=e, batch_size=s["batch"], env_steps=steps * e, eval_episodes=1, progress=False,
        checkpoint_every=10**9, device=str(device),
        network=dataclasses.replace(TrainConfig().network, context_len=s["k"], **s["net"]),
        replay=dataclasses.replace(TrainConfig().replay, capacity=max(4096, 4 * steps * e)),
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        t_act, r = online_run(base, device, Path(tmp) / "act")
        updates = steps * e // base.replay_ratio
        t0 = time.perf_counter()
        r.learn(updates)
        _sync(device)
        t_learn = time.perf_counter() - t0
        t_over, ro = online_run(
            dataclasses.replace(base, policy_lag=1), device, Path(tmp) / "over", s["batch"]
        )
    return {
        "envs": e, "vector_steps": steps, "updates": ro.counters.updates, "acting_s": round(t_act, 3),
        "learning_s": round(t_learn, 3), "overlapped_s": round(t_over, 3),
        "frames_per_s": round(4 * steps * e / t_over, 1), "overlap_ratio": round(t_over / max(t_act, t_learn), 3),
    }  # fmt: skip


SECTIONS = {"learner_step": learner_step, "lstm": lstm, "encode": encode, "actor": actor, "replay": replay,
            "threads": threads, "online": online}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu.json (default $OUT)")
    ap.add_argument("--smoke", action="store_true", help="every section on CPU at toy sizes (< 1 minute)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", action="append", default=[], help="run these sections only (repeatable)")
    a = ap.parse_args(argv)
    device = torch.device("cpu") if a.smoke else resolve_device(a.device)
    sizes = SMOKE if a.smoke else FULL
    if a.smoke:
        torch.set_num_threads(1)
    result: dict = {
        "machine": _machine(device),
        "smoke": a.smoke,
        "sizes": {k: v for k, v in sizes.items() if k != "net"},
    }
    for name, fn in SECTIONS.items():
        if a.only and name not in a.only:
            continue
        t0 = time.perf_counter()
        try:
            result[name] = fn(device, sizes)
        except Exception as e:  # one broken section must not cost the others their numbers
            result[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=4)}
        result[name]["seconds"] = round(time.perf_counter() - t0, 2)
        print(f"{name}: {json.dumps(result[name])[:300]}", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2))
    ratios = {
        "rise_over_btr_fp32": result.get("learner_step", {}).get("rise_over_btr_fp32"),
        "compiled_over_eager_k0": result.get("learner_step", {}).get("k0_over_fp32_compiled"),
        "graph_over_eager_k0": result.get("learner_step", {}).get("k0_over_fp32_graph"),
        "encode_model_over_path": result.get("encode", {}).get("ratio"),
        "online_overlap": result.get("online", {}).get("overlap_ratio"),
        "online_frames_per_s": result.get("online", {}).get("frames_per_s"),
    }
    print(json.dumps({"ratios": ratios, "machine": result["machine"]}))
    return result


def _machine(device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {os.cpu_count()} cores"
    return f"cpu ({os.cpu_count()} cores), load {os.getloadavg()[0]:.2f}"


if __name__ == "__main__":
    main()
