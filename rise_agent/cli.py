"""``rise-agent``: train the RISE agent from a store (offline or online) and evaluate checkpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import typer

from rise_agent.config import DERIVED, TrainConfig, load_config
from rise_agent.training.rundir import RunDir
from rise_data import plugins
from rise_data.cli_base import JSON, Printing, command, echo, new_app, user_errors
from rise_data.options import (
    ConfigError,
    Form,
    apply_options,
    build,
    cli_options,
    explicit,
    param,
    to_json,
    with_options,
)

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
    "run_dir",
}
SKIP = DERIVED | {"replay.ring_dir"}
FORMS = {
    "run_dir": Form(required=True, help="Run directory: config, checkpoint, metrics, curves."),
    "network.context_len": Form(aliases=("-k",)),
    "weights": Form(aliases=("--encoder-weights",)),
    "replay.capacity": Form(aliases=("--replay-capacity",)),
}


@dataclass(frozen=True)
class TrainRun:
    """What a training run starts from, and how it prints (the rest is :class:`TrainConfig`)."""

    config_file: str | None = param(None, "A config.json to start from (options override it).")
    resume: bool = param(False, "Continue the run in --run-dir.")
    quiet: bool = param(False, "Print only errors (implies --no-progress).")


FORMS |= {
    "config_file": Form(names=("--config",)),
    "resume": Form(names=("--resume",)),
    "quiet": Form(names=("--quiet", "-q")),
}
TRAIN_OPTIONS = cli_options(TrainRun, TrainConfig, skip=SKIP, forms=FORMS)


def _train_config(ctx: typer.Context, run: TrainRun, values: dict) -> TrainConfig:
    """Defaults, else --config FILE, else the run's own config.json on --resume; typed options on top."""
    given = explicit(ctx, [o for o in TRAIN_OPTIONS if o.root is TrainConfig], values)
    run_dir, config_file, resume = values["run_dir"], run.config_file, run.resume
    if run.quiet:
        given["progress"] = False
    if resume:
        if config_file:
            raise ConfigError("--resume continues the run's own config.json; drop --config")
        frozen = sorted(set(given) - RESUMABLE)
        if frozen:
            flags = ", ".join("--" + k.split(".")[-1].replace("_", "-") for k in frozen)
            raise ConfigError(f"{flags} cannot change on --resume (only targets, logging and paths can)")
        base = to_json(RunDir(run_dir).saved_config())
    elif config_file:
        try:
            base = json.loads(Path(config_file).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read --config {config_file}: {e}") from None
    else:
        base = to_json(TrainConfig())
    tree = apply_options(base, given)
    return load_config(tree, where=config_file or "options")


def train(ctx: typer.Context, **values) -> None:
    """Train offline from a store (--store, --updates) or online (--env, or --store --online)."""
    from rise_agent.training.train import train as run

    with user_errors():
        given = build(TrainRun, TRAIN_OPTIONS, values)
        config = _train_config(ctx, given, values)
        out = run(config, resume=given.resume)
    ev = out.get("eval") or {}
    echo(
        f"{out['run_dir']}: {out['updates']} updates, {out['env_steps']} env steps"
        + (
            f"; eval return {ev.get('mean', float('nan')):.2f} over {len(ev.get('returns', []))} episodes"
            if ev
            else ""
        ),
        given.quiet,
    )


app.command()(with_options(train, TRAIN_OPTIONS))


@dataclass(frozen=True)
class EvalConfig:
    """What ``rise-agent eval`` plays: checkpoints, episodes and the envs' settings."""

    checkpoints: list[str] = param(help="Checkpoints (checkpoint.pt of rise-agent train), one game each.")
    episodes: int = param(10, "Episodes per checkpoint.")
    epsilon: float = param(0.0, "ε-greedy during evaluation (noise is always off).")
    num_envs: int = param(8, "Parallel envs.")
    seed: int = param(0, "Seed.")
    record: str | None = param(None, "Write one episode as a .gif (or .mp4); one checkpoint only.")
    max_steps: int | None = param(None, "Cap each env at this many steps (cut episodes are reported).")
    encoder_weights: str | None = param(None, "Weights file of the frozen encoder, if needed.")
    allow_plugin: list[str] = param(
        factory=list,
        help="Plug-in code (module:name: an encoder, env or env factory) the checkpoint names, "
        "that you trust (repeatable).",
    )
    scores_csv: str | None = param(
        None, "Write one row per checkpoint: raw mean, human-normalized score or why it is raw only."
    )
    device: str = param("auto", "auto, cpu, cuda.")


EVAL_QUIET = Form(names=("--quiet", "-q"), help="Print only errors (and --json's output): no progress bar.")


@command(
    app,
    EvalConfig,
    Printing,
    name="eval",
    forms={"checkpoints": Form(argument=True), "as_json": JSON, "quiet": EVAL_QUIET},
)
def evaluate_cmd(config: EvalConfig, printing: Printing) -> None:
    """Evaluate checkpoints: raw and human-normalized scores; over several games also their IQM."""
    from rise_agent.evaluation.scores import write_scores_csv

    as_json, quiet = printing.as_json, printing.quiet
    with user_errors(), plugins.trusting(config.allow_plugin):
        if config.record and len(config.checkpoints) > 1:
            raise ConfigError("--record writes one checkpoint's episode; give one checkpoint with it")
        play = {
            "episodes": config.episodes,
            "epsilon": config.epsilon,
            "seed": config.seed,
            "num_envs": config.num_envs,
            "record": config.record,
        }
        play |= {"max_steps": config.max_steps, "progress": not (quiet or as_json)}
        results = [
            _evaluate_one(ck, config.device, config.encoder_weights, play) for ck in config.checkpoints
        ]
        if config.scores_csv:
            write_scores_csv(config.scores_csv, results)
    _report(results, config.record, as_json, quiet)


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
