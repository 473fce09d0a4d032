"""``rise-data``: collect trajectories, encode frames with frozen encoders, inspect and validate stores."""

from __future__ import annotations

import json
import sys
import warnings
from contextlib import contextmanager
from typing import Annotated

import typer

from rise_data import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Datasets for RISE: Zarr v3 stores of trajectories, frames and frozen-encoder embeddings.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rise-data {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Datasets for RISE."""


@contextmanager
def _user_errors():
    """Known bad input -> one line on stderr and exit code 2; anything else is a bug and keeps its traceback."""
    from rise_data.encoders import EncoderError
    from rise_data.envs import EnvError
    from rise_data.policies import PolicyError
    from rise_data.store import StoreError

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *a, **k: typer.echo(f"warning: {msg}", err=True)
        try:
            yield
        except (StoreError, EnvError, EncoderError, PolicyError, ValueError, FileNotFoundError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None


def _print_config(config) -> None:
    import dataclasses

    typer.echo(f"{type(config).__name__}: " + json.dumps(dataclasses.asdict(config), default=str), err=True)


def _parse_options(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--env-option takes KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


@app.command()
def collect(
    env_id: Annotated[str, typer.Argument(help="Gymnasium id with image observations, e.g. ALE/Pong-v5.")],
    store: Annotated[
        str, typer.Argument(help="Store path (created, or appended to if it holds the same env).")
    ],
    steps: Annotated[
        int | None,
        typer.Option(help="Collect at least this many steps; running episodes are cut as truncated."),
    ] = None,
    episodes: Annotated[int | None, typer.Option(help="Or collect this many whole episodes.")] = None,
    envs: Annotated[int, typer.Option(help="Parallel environments.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the envs and the policy.")] = 0,
    policy: Annotated[
        str, typer.Option(help="random, checkpoint (with --checkpoint), or module:function.")
    ] = "random",
    checkpoint: Annotated[
        str | None, typer.Option(help="A rise-agent checkpoint for --policy checkpoint.")
    ] = None,
    frames: Annotated[
        bool, typer.Option("--frames/--no-frames", help="Store the RGB frames the encoders read.")
    ] = True,
    screen_size: Annotated[int, typer.Option(help="Side of the square grayscale agent observation.")] = 84,
    env_option: Annotated[
        list[str],
        typer.Option(
            help="Env/preprocessing override KEY=VALUE (repeatable), e.g. repeat_action_probability=0.0."
        ),
    ] = [],  # noqa: B006
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Collect trajectories from an environment into a store."""
    from rise_data.collect import CollectConfig
    from rise_data.collect import collect as run

    with _user_errors():
        if steps is None and episodes is None:
            raise ValueError("give --steps N or --episodes N")
        config = CollectConfig(
            env_id=env_id,
            store=store,
            steps=steps,
            episodes=episodes,
            envs=envs,
            seed=seed,
            policy=policy,
            checkpoint=checkpoint,
            frames=frames,
            screen_size=screen_size,
            env_options=_parse_options(env_option),
            progress=not quiet,
        )
        _print_config(config)
        out = run(config)
    typer.echo(
        f"{out['store']}: +{out['steps']} steps, +{out['episodes']} episodes in {out['seconds']:.1f} s "
        f"({out['steps'] / max(out['seconds'], 1e-9):.0f} steps/s); total {out['total_rows']} rows, "
        f"{out['total_episodes']} episodes" + (" (interrupted)" if out["interrupted"] else "")
    )


@app.command()
def encode(
    store: Annotated[str, typer.Argument(help="Store path.")],
    encoder: Annotated[
        str, typer.Option(help="resnet18, efficientnet-lite0, downsample, or module:function.")
    ] = "resnet18",
    weights: Annotated[
        str | None, typer.Option(help="State-dict file (loaded with weights_only), or 'untrained'.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Embeddings array name (default: the encoder name).")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Array to encode: frame (RGB) or obs (gray). Default: frame if stored.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Frames per device batch (rounded to whole chunks).")] = 512,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    dtype: Annotated[str, typer.Option(help="Stored dtype: float16 or float32.")] = "float16",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the encoder (CUDA).")] = False,
    read_workers: Annotated[int, typer.Option(help="Background read/decompress threads.")] = 4,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Redo embeddings that exist under this name.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Embed every frame of a store once with a frozen encoder (resumable)."""
    from rise_data.encode import EncodeConfig
    from rise_data.encode import encode as run

    with _user_errors():
        if dtype not in ("float16", "float32", "bfloat16"):
            raise ValueError(f"--dtype {dtype} is not float16, float32 or bfloat16")
        config = EncodeConfig(
            store=store,
            encoder=encoder,
            weights=weights,
            name=name,
            source=source,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            compile=compile,
            read_workers=read_workers,
            overwrite=overwrite,
            progress=not quiet,
        )
        _print_config(config)
        out = run(config)
    if out["rows"] == 0 and out["complete"]:
        typer.echo(f"{store}: embeddings '{out['name']}' are already complete")
    else:
        typer.echo(
            f"{store}: embeddings '{out['name']}' +{out['rows']} rows in {out['seconds']:.1f} s "
            f"({out['rows_per_s']:.0f} frames/s on {out['device']})"
            + ("" if out["complete"] else " (incomplete)")
        )


@app.command()
def info(
    store: Annotated[str, typer.Argument(help="Store path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show steps, episodes, returns, arrays and encoders of a store."""
    from rise_data.info import format_info, store_info
    from rise_data.store import open_store

    with _user_errors():
        data = store_info(open_store(store))
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else format_info(data))


@app.command()
def check(
    store: Annotated[str, typer.Argument(help="Store path.")],
    deep: Annotated[bool, typer.Option("--deep", help="Also decompress every image chunk.")] = False,
) -> None:
    """Validate a store; exit code 1 if it has errors."""
    from rise_data.check import check_store

    problems = check_store(store, deep=deep)
    for p in problems:
        typer.echo(str(p), err=p.severity == "error")
    errors = sum(p.severity == "error" for p in problems)
    warns = len(problems) - errors
    if errors:
        typer.echo(f"{store}: INVALID ({errors} errors, {warns} warnings)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{store}: ok" + (f" ({warns} warnings)" if warns else ""))


if __name__ == "__main__":
    sys.exit(app())
