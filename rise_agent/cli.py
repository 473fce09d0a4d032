"""``rise-agent``: train the RISE agent from a store (offline or online) and evaluate checkpoints."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer

from rise_data._cli import new_app, user_errors

app = new_app("rise-agent", "The RISE agent: BTR + a frozen-encoder context stream.")


@app.command()
def train(
    run_dir: Annotated[str, typer.Option(help="Run directory (config, checkpoint, metrics, curves).")],
    store: Annotated[
        str | None, typer.Option(help="Store to pretrain on / to mix into online replay.")
    ] = None,
    embedding: Annotated[
        str | None, typer.Option(help="Embeddings array of the store (default: the only complete one).")
    ] = None,
    online: Annotated[bool, typer.Option("--online", help="Online fine-tuning in vectorized envs.")] = False,
    env: Annotated[str | None, typer.Option(help="Env id for online training without a store.")] = None,
    updates: Annotated[int, typer.Option(help="Offline: gradient steps.")] = 0,
    env_steps: Annotated[int, typer.Option(help="Online: env steps (all envs together).")] = 0,
    num_envs: Annotated[int, typer.Option(help="Online: parallel envs.")] = 64,
    context_len: Annotated[
        int, typer.Option("--context-len", "-k", help="K stored embeddings (0 = plain BTR).")
    ] = 80,
    lstm_hidden: Annotated[int, typer.Option(help="LSTM size.")] = 512,
    impala_width: Annotated[
        int, typer.Option(help="Impala CNN width scale: channels 16/32/32 times this (BTR: 2).")
    ] = 2,
    hidden: Annotated[int, typer.Option(help="Dueling layer size (BTR: 512).")] = 512,
    combine: Annotated[str, typer.Option(help="multiply (paper), concat or add.")] = "multiply",
    layer_norm: Annotated[bool, typer.Option("--layer-norm", help="BTR's optional LayerNorm.")] = False,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 256,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-4,
    replay_capacity: Annotated[int, typer.Option(help="Online replay rows.")] = 2**20,
    replay_ratio: Annotated[int, typer.Option(help="Env steps per gradient step.")] = 64,
    learning_starts: Annotated[
        int, typer.Option(help="Replay transitions before learning starts.")
    ] = 200_000,
    uniform: Annotated[bool, typer.Option("--uniform", help="Uniform replay instead of PER.")] = False,
    write_back: Annotated[
        bool,
        typer.Option(
            "--write-back", help="Online: append played episodes and their embeddings to the store."
        ),
    ] = False,
    offline_fraction: Annotated[
        float | None,
        typer.Option(help="Online: share of each batch from the store's transitions (default: by size)."),
    ] = None,
    cql_alpha: Annotated[
        float | None, typer.Option(help="Conservative regulariser weight (default 1 offline, 0 online).")
    ] = None,
    eps_start: Annotated[float, typer.Option(help="Initial ε.")] = 1.0,
    eps_decay_steps: Annotated[int, typer.Option(help="Env steps over which ε decays to 0.01.")] = 2_000_000,
    init_checkpoint: Annotated[str | None, typer.Option(help="Start from this checkpoint's network.")] = None,
    encoder_weights: Annotated[
        str | None, typer.Option(help="Weights file of the store's encoder (online).")
    ] = None,
    target_update: Annotated[int, typer.Option(help="Gradient steps between target copies.")] = 500,
    checkpoint_every: Annotated[int, typer.Option(help="Gradient steps between checkpoints.")] = 5000,
    log_every: Annotated[int, typer.Option(help="Gradient steps between metric rows.")] = 100,
    eval_every: Annotated[int, typer.Option(help="Gradient steps between evaluations (0: at the end).")] = 0,
    eval_episodes: Annotated[int, typer.Option(help="Episodes per evaluation.")] = 8,
    eval_max_steps: Annotated[
        int | None, typer.Option(help="Cap evaluation at this many steps per env.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --run-dir.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train offline from a store (--updates) or online (--online --env-steps)."""
    from rise_agent.learner import LearnerConfig
    from rise_agent.network import NetworkConfig
    from rise_agent.replay import ReplayConfig
    from rise_agent.train import TrainConfig
    from rise_agent.train import train as run

    with user_errors():
        if resume:
            from pathlib import Path

            saved = Path(run_dir) / "config.json"
            if not saved.exists():
                raise ValueError(f"{run_dir} has no config.json to resume")
            config = config_from_json(json.loads(saved.read_text()))
        else:
            config = TrainConfig(
                run_dir=run_dir,
                store=store,
                embedding=embedding,
                online=online,
                env=env,
                updates=updates,
                env_steps=env_steps,
                num_envs=num_envs,
                batch_size=batch_size,
                replay_ratio=replay_ratio,
                learning_starts=learning_starts,
                cql_alpha=cql_alpha,
                eps_start=eps_start,
                eps_decay_steps=eps_decay_steps,
                init_checkpoint=init_checkpoint,
                write_back=write_back,
                encoder_weights=encoder_weights,
                checkpoint_every=checkpoint_every,
                log_every=log_every,
                eval_every=eval_every,
                eval_episodes=eval_episodes,
                eval_max_steps=eval_max_steps,
                seed=seed,
                device=device,
                progress=not quiet,
                network=NetworkConfig(
                    n_actions=1,
                    context_len=context_len,
                    lstm_hidden=lstm_hidden,
                    combine=combine,
                    layer_norm=layer_norm,
                    impala_channels=tuple(c * impala_width for c in (16, 32, 32)),
                    hidden=hidden,
                ),
                learner=LearnerConfig(lr=lr, target_update=target_update),
                replay=ReplayConfig(
                    capacity=replay_capacity,
                    prioritized=not uniform,
                    context_len=context_len,
                    offline_fraction=offline_fraction,
                ),
            )
        out = run(config, resume=resume)
    ev = out.get("eval") or {}
    typer.echo(
        f"{out['run_dir']}: {out['updates']} updates, {out['env_steps']} env steps"
        + (
            f"; eval return {ev.get('mean', float('nan')):.2f} over {len(ev.get('returns', []))} episodes"
            if ev
            else ""
        )
    )


def config_from_json(d: dict):
    """Rebuild a TrainConfig (with its nested configs) from config.json."""
    from rise_agent.learner import LearnerConfig
    from rise_agent.network import NetworkConfig
    from rise_agent.replay import ReplayConfig
    from rise_agent.train import TrainConfig

    def build(cls, values: dict):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        out = {}
        for k, v in values.items():
            if k in fields:
                out[k] = tuple(v) if isinstance(v, list) else v
        return cls(**out)

    return build(
        TrainConfig,
        {
            **d,
            "network": build(NetworkConfig, d["network"]),
            "learner": build(LearnerConfig, d["learner"]),
            "replay": build(ReplayConfig, d["replay"]),
        },
    )


@app.command("eval")
def evaluate_cmd(
    checkpoint: Annotated[str, typer.Argument(help="A checkpoint.pt written by rise-agent train.")],
    episodes: Annotated[int, typer.Option(help="Episodes.")] = 10,
    epsilon: Annotated[float, typer.Option(help="ε-greedy during evaluation (noise is always off).")] = 0.0,
    num_envs: Annotated[int, typer.Option(help="Parallel envs.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    record: Annotated[str | None, typer.Option(help="Write one episode as a .gif (or .mp4).")] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Cap each env at this many steps (cut episodes are reported).")
    ] = None,
    encoder_weights: Annotated[
        str | None, typer.Option(help="Weights file of the frozen encoder, if needed.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate a checkpoint: raw and human-normalized scores."""
    from rise_agent.evaluate import evaluate, load_agent

    with user_errors():
        from rise_data.encode import resolve_device

        dev = resolve_device(device)
        net, encoder, meta = load_agent(checkpoint, dev, encoder_weights=encoder_weights)
        out = evaluate(
            net,
            encoder,
            meta["env"],
            episodes=episodes,
            epsilon=epsilon,
            seed=seed,
            num_envs=min(num_envs, episodes),
            record=record,
            max_steps=max_steps,
        )
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    hn = out.get("human_normalized")
    typer.echo(
        f"{checkpoint}: {len(out['returns'])} episodes, return {out['mean']:.2f} ± {out['std']:.2f}"
        + (f", human-normalized {hn:.3f}" if hn is not None else "")
        + (f"; recorded {record}" if record else "")
    )


if __name__ == "__main__":
    app()
