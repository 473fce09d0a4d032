"""``rise-agent``: train the RISE agent from a store (offline or online) and evaluate checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rise_agent.config import DERIVED, TrainConfig, load_config
from rise_agent.training.rundir import RunDir
from rise_data import plugins
from rise_data.cli_base import echo, new_app, user_errors
from rise_data.options import Form, apply_options, cli_options, explicit, to_json, with_options

app = new_app("rise-agent", "The RISE agent: BTR + a frozen-encoder context stream.")


# Options typed on the command line override --config FILE, which overrides the defaults. On --resume
# the saved config.json is the base and only these may change (targets, logging, where things are).
RESUMABLE = {
    "updates",
    "env_steps",
    "eval_every",
    "eval_episodes",
    "eval_max_steps",
    "checkpoint_every",
    "log_every",
    "progress",
    "device",
    "weights",
    "allow_plugin",
}
SKIP = DERIVED | {"run_dir", "replay.ring_dir"}
FORMS = {
    "network.context_len": Form(aliases=("-k",)),
    "weights": Form(aliases=("--encoder-weights",)),
    "replay.capacity": Form(aliases=("--replay-capacity",)),
}
TRAIN_OPTIONS = cli_options(TrainConfig, skip=SKIP, forms=FORMS)


def _train_config(
    ctx: typer.Context, run_dir: str, config_file: str | None, resume: bool, values: dict, quiet: bool
):
    given = explicit(ctx, TRAIN_OPTIONS, values)
    if quiet:
        given["progress"] = False
    if resume:
        if config_file:
            raise ValueError("--resume continues the run's own config.json; drop --config")
        frozen = sorted(set(given) - RESUMABLE)
        if frozen:
            flags = ", ".join("--" + k.split(".")[-1].replace("_", "-") for k in frozen)
            raise ValueError(f"{flags} cannot change on --resume (only targets, logging and paths can)")
        base = to_json(RunDir(run_dir).saved_config())
    elif config_file:
        try:
            base = json.loads(Path(config_file).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read --config {config_file}: {e}") from None
    else:
        base = to_json(TrainConfig())
    tree = apply_options(base, {**given, "run_dir": run_dir})
    return load_config(tree, where=config_file or "options")


def train(
    ctx: typer.Context,
    run_dir: Annotated[str, typer.Option(help="Run directory: config, checkpoint, metrics, curves.")],
    config_file: Annotated[
        str | None, typer.Option("--config", help="A config.json to start from (options override it).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --run-dir.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only errors (implies --no-progress).")
    ] = False,
    **values,
) -> None:
    """Train offline from a store (--store, --updates) or online (--env, or --store --online)."""
    from rise_agent.training.train import train as run

    with user_errors():
        config = _train_config(ctx, run_dir, config_file, resume, values, quiet)
        out = run(config, resume=resume)
    ev = out.get("eval") or {}
    echo(
        f"{out['run_dir']}: {out['updates']} updates, {out['env_steps']} env steps"
        + (
            f"; eval return {ev.get('mean', float('nan')):.2f} over {len(ev.get('returns', []))} episodes"
            if ev
            else ""
        ),
        quiet,
    )


app.command()(with_options(train, TRAIN_OPTIONS))


@app.command("eval")
def evaluate_cmd(
    checkpoints: Annotated[
        list[str], typer.Argument(help="Checkpoints (checkpoint.pt of rise-agent train), one game each.")
    ],
    episodes: Annotated[int, typer.Option(help="Episodes per checkpoint.")] = 10,
    epsilon: Annotated[float, typer.Option(help="ε-greedy during evaluation (noise is always off).")] = 0.0,
    num_envs: Annotated[int, typer.Option(help="Parallel envs.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    record: Annotated[
        str | None, typer.Option(help="Write one episode as a .gif (or .mp4); one checkpoint only.")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Cap each env at this many steps (cut episodes are reported).")
    ] = None,
    encoder_weights: Annotated[
        str | None, typer.Option(help="Weights file of the frozen encoder, if needed.")
    ] = None,
    allow_plugin: Annotated[
        list[str] | None,
        typer.Option(
            help="Plug-in code (module:name: an encoder, env or env factory) the checkpoint names, "
            "that you trust (repeatable)."
        ),
    ] = None,
    scores_csv: Annotated[
        str | None,
        typer.Option(
            help="Write one row per checkpoint: raw mean, human-normalized score or why it is raw only."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only errors (and --json's output): no progress bar.")
    ] = False,
) -> None:
    """Evaluate checkpoints: raw and human-normalized scores; over several games also their IQM."""
    from rise_agent.evaluation.scores import write_scores_csv

    with user_errors(), plugins.trusting(allow_plugin or ()):
        if record and len(checkpoints) > 1:
            raise ValueError("--record writes one checkpoint's episode; give one checkpoint with it")
        play = {
            "episodes": episodes,
            "epsilon": epsilon,
            "seed": seed,
            "num_envs": num_envs,
            "record": record,
        }
        play |= {"max_steps": max_steps, "progress": not (quiet or as_json)}
        results = [_evaluate_one(ck, device, encoder_weights, play) for ck in checkpoints]
        if scores_csv:
            write_scores_csv(scores_csv, results)
    _report(results, record, as_json, quiet)


def _report(results: list[dict], record: str | None, as_json: bool, quiet: bool) -> None:
    """Each checkpoint's line (or JSON), then over several games their IQM (or why there is none)."""
    from rise_agent.evaluation.scores import aggregate, summary

    games = {r["env"] for r in results}
    agg = aggregate(results) if len(results) > 1 and len(games) == len(results) else None
    if as_json:
        one = results[0] if len(results) == 1 else {"results": results, "aggregate": agg}
        typer.echo(json.dumps(one, indent=2, default=str))
        return
    for r in results:
        echo(f"{r['checkpoint']}: {summary(r)}" + (f"; recorded {record}" if record else ""), quiet)
    if agg is not None:
        echo(_aggregate_line(agg), quiet)
    elif len(results) > 1:
        echo(f"no IQM: {len(results)} checkpoints of {len(games)} games (IQM takes one per game)", quiet)


def _evaluate_one(checkpoint: str, device: str, encoder_weights: str | None, play: dict) -> dict:
    from rise_agent.evaluation.evaluate import evaluate, load_agent
    from rise_data.encode import resolve_device

    net, encoder, meta = load_agent(checkpoint, resolve_device(device), encoder_weights=encoder_weights)
    out = evaluate(net, encoder, meta["env"], **{**play, "num_envs": min(play["num_envs"], play["episodes"])})
    return {"checkpoint": checkpoint, **out}


def _aggregate_line(agg: dict) -> str:
    raw = f"; raw only: {', '.join(agg['raw_only'])}" if agg["raw_only"] else ""
    if agg["iqm"] is None:
        return f"no IQM: no game has a human-normalized score{raw}"
    return (
        f"IQM human-normalized over {len(agg['games'])} games: {agg['iqm']:.3f} "
        f"[{agg['low']:.3f}, {agg['high']:.3f}] ({agg['confidence']:.0%} bootstrap){raw}"
    )


if __name__ == "__main__":
    app()
