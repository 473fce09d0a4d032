"""Quickstart (`make demo`): RISE learns to remember, plain BTR cannot; CPU, offline, a few minutes.

A small memory probe (pipelines/memory_probe.py): rise/CueMemory-v0 shows a cue (left or right) on the
first frame and asks for it `delay` steps later. Random-policy episodes are collected into a Zarr store,
every frame is embedded once with the frozen `downsample` encoder, and two agents are pretrained offline
on the same data: RISE with a K-step context window (K > delay) and plain BTR (K = 0, 4-frame stack,
which never sees the cue at the question). Both are evaluated in the env every few gradient steps; the
curves land in one PNG and a verdict is printed. `--pong` adds the Atari plumbing (collect Pong, encode
with EfficientNet-Lite0, check, info, pretrain, fine-tune, evaluate), several more minutes.

Usage: python pipelines/quickstart.py [--out runs/quickstart] [--pong]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # run as a script: memory_probe sits next to this file

from memory_probe import CHANCE, Probe, plot_curves, run_probe  # noqa: E402


def memory_demo(out: Path, probe: Probe) -> str:
    """Train RISE (K = probe.ks[0]) and plain BTR (K = 0) on the probe; write the PNG, return the verdict."""
    k = probe.ks[0]
    results = run_probe(out, probe)
    png = plot_curves(
        results,
        out / "memory_curves.png",
        f"Recall a cue {probe.delay} steps later ({probe.eval_episodes} eval episodes per point)",
    )
    rise, btr = results[k]["success"], results[0]["success"]
    verdict = (
        f"RISE K={k}: {rise:.0%} vs K=0: {btr:.0%} (chance {CHANCE:.0%}) over {probe.eval_episodes} "
        f"evaluation episodes after {probe.updates} gradient steps"
    )
    if rise >= 0.9 and btr <= 0.65:
        verdict += " -> RISE remembers the cue; plain BTR guesses."
    else:
        verdict += " -> inconclusive at these sizes (see pipelines/memory_probe.py for the full probe)."
    print(f"\n{verdict}\ncurves: {png}", flush=True)
    return verdict


def sh(*args: str) -> None:
    print("\n$ " + " ".join(args), flush=True)
    subprocess.run(args, check=True)


def pong_plumbing(run: Path) -> None:
    """The Atari data path through the real CLIs: collect, encode, check, info, pretrain, fine-tune, eval."""
    store = run / "pong.zarr"
    data = [sys.executable, "-m", "rise_data.cli"]
    sh(*data, "collect", "ALE/Pong-v5", str(store), "--steps", "2000", "--num-envs", "4", "--seed", "0")
    sh(*data, "encode", str(store), "--encoder", "efficientnet-lite0", "--batch-size", "64")
    sh(*data, "check", str(store))
    sh(*data, "info", str(store))
    sh(sys.executable, str(Path(__file__).with_name("quickstart_agent.py")), str(store), str(run))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--delay", type=int, default=10, help="steps between the cue and the question")
    p.add_argument("-k", "--context-len", type=int, default=16, help="RISE's window; > delay holds the cue")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--updates", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pong", action="store_true", help="also run the Atari plumbing (several more minutes)")
    args = p.parse_args()
    if args.context_len <= args.delay:
        p.error(
            f"--context-len {args.context_len} must exceed --delay {args.delay}, or RISE cannot see the cue"
        )
    run = Path(args.out)
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    t0 = time.time()
    probe = Probe(
        delay=args.delay,
        ks=(args.context_len, 0),
        episodes=args.episodes,
        updates=args.updates,
        batch_size=args.batch_size,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        seed=args.seed,
    )
    memory_demo(run / "memory", probe)
    if args.pong:
        pong_plumbing(run)
    print(f"\nquickstart done in {time.time() - t0:.0f} s: outputs in {run}/", flush=True)


if __name__ == "__main__":
    main()
