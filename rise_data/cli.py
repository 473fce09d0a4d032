"""``rise-data``: collect trajectories, encode frames with frozen encoders, inspect and validate stores."""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from typing import Annotated

import typer

from rise_data.cli_base import echo, new_app, user_errors
from rise_data.collect.config import CollectConfig
from rise_data.encode.config import EncodeConfig
from rise_data.options import Form, cli_options, field_help, with_options
from rise_data.store.format import StoreLayout
from rise_data.view.config import ViewConfig

app = new_app(
    "rise-data", "Datasets for RISE: Zarr v3 stores of trajectories, frames and frozen-encoder embeddings."
)
_user_errors = user_errors


def _print_config(config) -> None:
    if not getattr(config, "progress", True):  # --quiet: nothing but errors
        return
    typer.echo(f"{type(config).__name__}: " + json.dumps(dataclasses.asdict(config), default=str), err=True)


# collect and encode take their options from their config dataclasses (defaults and help declared once there)
COLLECT_SKIP = {"env_id", "store", "env_options", "wrappers", "progress"}
COLLECT_SKIP |= {f"layout.{f.name}" for f in dataclasses.fields(StoreLayout)}
COLLECT_OPTIONS = cli_options(CollectConfig, skip=COLLECT_SKIP)
ENCODE_OPTIONS = cli_options(EncodeConfig, skip={"store", "progress"})


def collect(
    env_id: Annotated[str, typer.Argument(help=field_help(CollectConfig)["env_id"])],
    store: Annotated[str, typer.Argument(help=field_help(CollectConfig)["store"])],
    env_option: Annotated[
        list[str],
        typer.Option(
            help="Env/preprocessing override KEY=VALUE (repeatable), e.g. repeat_action_probability=0.0."
        ),
    ] = [],  # noqa: B006
    wrapper: Annotated[
        list[str],
        typer.Option(
            help="Gymnasium wrapper NAME[=ARG] (repeatable, applied in order), e.g. render, frame_skip=4, "
            "resize=64x64, image_key=screen; see docs/envs.md."
        ),
    ] = [],  # noqa: B006
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only errors (no progress bar).")
    ] = False,
    old_envs: Annotated[
        int | None, typer.Option("--envs", hidden=True, help="Deprecated: --num-envs.")
    ] = None,
    **values,
) -> None:
    """Collect trajectories from an environment into a store.

    Holds the store's writer lock (a second writer is refused). Every finished episode is committed as soon
    as the writer thread is free; a kill -9 loses only the running episodes and those not yet committed.
    """
    from rise_data.collect import collect as run
    from rise_data.envs import parse_env_options

    with _user_errors():
        if old_envs is not None:
            warnings.warn("--envs is deprecated: use --num-envs (the name rise-agent uses)", stacklevel=1)
            values["num_envs"] = old_envs
        config = CollectConfig(
            env_id=env_id,
            store=store,
            env_options=parse_env_options(env_option),
            wrappers=list(wrapper),
            progress=not quiet,
            **values,
        )
        _print_config(config)
        out = run(config)
    echo(
        f"{out['store']}: +{out['steps']} steps, +{out['episodes']} episodes in {out['seconds']:.1f} s "
        f"({out['steps'] / max(out['seconds'], 1e-9):.0f} steps/s); total {out['total_rows']} rows, "
        f"{out['total_episodes']} episodes" + (" (interrupted)" if out["interrupted"] else ""),
        quiet,  # --quiet: nothing but errors
    )


app.command()(with_options(collect, COLLECT_OPTIONS))


def encode(
    store: Annotated[str, typer.Argument(help=field_help(EncodeConfig)["store"])],
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only errors (no progress bar).")
    ] = False,
    **values,
) -> None:
    """Embed every frame of a store once with a frozen encoder (resumable).

    Scale-out: torchrun --nproc-per-node N -m rise_data.cli encode STORE ... runs one rank per process
    (each on its own GPU, or CPU), each encoding whole chunks of its own rows (docs/scale.md).
    """
    import os

    from rise_data.encode import encode as run

    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun, one rank speaks for the job

    with _user_errors():
        config = EncodeConfig(store=store, progress=not quiet, **values)
        if rank0:
            _print_config(config)
        out = run(config)
    if not rank0 or quiet:  # --quiet: nothing but errors
        return
    if out["rows"] == 0 and out["complete"]:
        typer.echo(f"{store}: embeddings '{out['name']}' are already complete")
    else:
        typer.echo(
            f"{store}: embeddings '{out['name']}' +{out['rows']} rows in {out['seconds']:.1f} s "
            f"({out['rows_per_s']:.0f} frames/s on {out['device']}"
            + (f" and {out['ranks'] - 1} more ranks)" if out["ranks"] > 1 else ")")
            + ("" if out["complete"] else " (incomplete)")
        )


app.command()(with_options(encode, ENCODE_OPTIONS))


@app.command()
def info(
    store: Annotated[str, typer.Argument(help="Store path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show steps, episodes, returns, arrays and encoders of a store."""
    from rise_data.store import open_store
    from rise_data.store.info import format_info, store_info

    with _user_errors():
        data = store_info(open_store(store))
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else format_info(data))


@app.command()
def check(
    store: Annotated[str, typer.Argument(help="Store directory, packed .zip or URL.")],
    fast: Annotated[
        bool, typer.Option("--fast", help="Structure only: do not decode image and embedding chunks.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
    deep: Annotated[
        bool, typer.Option("--deep", hidden=True, help="The default now; kept for scripts.")
    ] = False,
) -> None:
    """Validate a store: metadata, episode index, every chunk decoded and, if sealed, checksums verified.

    Exit code 0: valid (warnings allowed); 1: invalid data; 2: usage error; 3: a bug in rise.
    """
    from rise_data.cli_base import EXIT_INVALID
    from rise_data.store.check import check_store, report

    with _user_errors():
        problems = check_store(store, fast=fast, progress=not (quiet or as_json))
        result = report(store, problems, fast)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        for p in problems:
            if p.severity == "error" or not quiet:
                typer.echo(str(p), err=p.severity == "error")
        if result["errors"]:
            typer.echo(
                f"{store}: INVALID ({result['errors']} errors, {result['warnings']} warnings)", err=True
            )
        elif not quiet:
            seal = "checksums verified" if result["sealed"] and not fast else "not sealed"
            if fast:
                seal = "structure only (--fast)"
            warns = f", {result['warnings']} warnings" if result["warnings"] else ""
            typer.echo(f"{store}: ok ({seal}{warns})")
    if result["errors"]:
        raise typer.Exit(EXIT_INVALID)


@app.command()
def repair(
    store: Annotated[str, typer.Argument(help="Store directory.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Trim a killed writer's uncommitted tails and temp files, so array shapes equal the committed rows.

    Committed data is never touched. Takes the store's writer lock: refused while a writer runs.
    """
    from rise_data.store import open_store
    from rise_data.store.lock import store_lock

    with _user_errors():
        open_store(store, mode="a")  # a writable store directory, before its lock is taken
        with store_lock(store, "repair"):
            out = open_store(store, mode="a").repair()
    echo(
        f"{store}: dropped {out['rows_dropped']} uncommitted rows, {out['episodes_dropped']} uncommitted "
        f"episode entries, {out['temp_files_removed']} temp files",
        quiet,
    )


# -- sharing: identity and cards, packing, integrity, statistics, export/import, editing ----------
# (docs/sharing.md). Every command that only reads takes a store directory, a packed .zip or a URL.


def _key_values(items: list[str], option: str) -> dict:
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        try:
            out[k] = float(v)
        except ValueError:
            sep = ""
        if not sep or not k:
            raise ValueError(f"{option} takes NAME=NUMBER, got '{item}'")
    return out


@app.command()
def card(
    store: Annotated[
        str, typer.Argument(help="Store directory, packed .zip or URL (read-only: print only).")
    ],
    dataset_id: Annotated[
        str | None, typer.Option("--id", help="Versioned dataset id NAME-vN, e.g. pong-random-v0.")
    ] = None,
    author: Annotated[str | None, typer.Option(help="Author(s) of the dataset.")] = None,
    license_: Annotated[str | None, typer.Option("--license", help="License, e.g. CC-BY-4.0.")] = None,
    description: Annotated[str | None, typer.Option(help="What the dataset is, in a few sentences.")] = None,
    ref_score: Annotated[
        list[str],
        typer.Option(help="Reference score NAME=VALUE (repeatable), e.g. random=-20.7 expert=21."),
    ] = [],  # noqa: B006
    force: Annotated[
        bool, typer.Option("--force", help="Allow renaming an id or re-using it for changed data.")
    ] = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the card to this file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the card's data as JSON.")] = False,
) -> None:
    """Print a store's dataset card (markdown); --id/--author/--license/... set those fields first."""
    from pathlib import Path

    from rise_data.share.card import CardConfig, card_data, render_card, set_card
    from rise_data.store import open_store

    with _user_errors():
        config = CardConfig(
            store=store,
            id=dataset_id,
            author=author,
            license=license_,
            description=description,
            reference_scores=_key_values(ref_score, "--ref-score"),
            force=force,
        )
        if config.sets_anything:
            set_card(config)
        elif force:
            raise ValueError(
                "--force only applies when setting --id, --author, --license, --description or --ref-score"
            )
        data = card_data(open_store(store))
        text = json.dumps(data, indent=2, default=str) if as_json else render_card(data)
        if output:
            Path(output).write_text(text + "\n")
    typer.echo(f"{store}: card written to {output}" if output else text)


@app.command()
def seal(
    store: Annotated[str, typer.Argument(help="Store directory.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Record per-array sha256 checksums (streaming) for check to verify."""
    import time

    from tqdm import tqdm

    from rise_data.store import compute_checksums, open_store
    from rise_data.store.lock import store_lock

    with _user_errors():
        open_store(store, mode="a")  # a writable store directory, before its lock is taken
        with store_lock(store, "seal"):
            s = open_store(store, mode="a")
            t0 = time.perf_counter()
            names = s.checksum_names()
            digests = {}
            for name in tqdm(names, unit="array", desc="seal", disable=quiet):
                digests.update(compute_checksums(s, [name]))
            s.record_checksums(digests, replace=True)
    echo(f"{store}: sealed {len(digests)} arrays, {s.rows} rows, in {time.perf_counter() - t0:.1f} s", quiet)


@app.command()
def stats(
    store: Annotated[
        str, typer.Argument(help="Store directory, packed .zip or URL (read-only: print only).")
    ],
    bins: Annotated[
        int, typer.Option(help="Histogram bins per embedding dimension (quantile resolution).")
    ] = 1024,
    write: Annotated[
        bool, typer.Option("--write/--no-write", help="Record them in the store's attributes.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Normalisation statistics (obs/frame/reward/returns; per-dimension for embeddings), streaming."""
    from rise_data.share.stats import StatsConfig, format_stats
    from rise_data.share.stats import stats as run

    with _user_errors():
        if bins < 2:
            raise ValueError("--bins must be at least 2")
        progress = not (quiet or as_json)
        root, emb, written = run(StatsConfig(store=store, bins=bins, write=write, progress=progress))
    if as_json:
        typer.echo(json.dumps({**root, "embeddings": emb}, indent=2))
    else:
        echo(format_stats(root, emb), quiet)
        if write and not written:
            echo(f"{store} is read-only: statistics printed, not recorded", quiet, err=True)


@app.command()
def pack(
    store: Annotated[str, typer.Argument(help="Store directory.")],
    output: Annotated[str, typer.Argument(help="The .zip file to write (once; stored entries).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Pack a store directory into one .zip that every read-only command (and open_store) reads in place.

    Only the store's own files go in (no locks, temp files or other files; a store holding a symbolic
    link is refused).
    """
    from rise_data.share.pack import PackConfig
    from rise_data.share.pack import pack as run

    with _user_errors():
        out = run(PackConfig(store=store, output=output, force=force, progress=not quiet))
    if out["left_out"]:
        shown = ", ".join(out["left_out"][:5]) + (" ..." if len(out["left_out"]) > 5 else "")
        echo(
            f"left out {len(out['left_out'])} files that are not part of the store: {shown}", quiet, err=True
        )
    echo(
        f"{out['output']}: {out['rows']} rows, {out['episodes']} episodes, {out['bytes'] / 1e6:.1f} MB "
        f"in {out['seconds']:.1f} s (sealed)",
        quiet,
    )


def _export_format(output: str, fmt: str) -> str:
    if fmt != "auto":
        if fmt not in ("hdf5", "minari"):
            raise ValueError(f"--format must be auto, hdf5 or minari, got '{fmt}'")
        return fmt
    if output.startswith("minari:"):
        return "minari"
    if output.lower().endswith((".h5", ".hdf5")):
        return "hdf5"
    raise ValueError(
        f"cannot tell the format of '{output}': name an .h5 file or minari:DATASET_ID, or pass --format"
    )


@app.command()
def export(
    store: Annotated[str, typer.Argument(help="Store directory, packed .zip or URL.")],
    output: Annotated[str, typer.Argument(help="OUT.h5 (HDF5), or minari:DATASET_ID (a Minari dataset).")],
    format: Annotated[str, typer.Option(help="auto (from OUTPUT), hdf5 or minari.")] = "auto",
    compression: Annotated[str, typer.Option(help="HDF5: gzip (level 1), lzf or none.")] = "gzip",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Export a store to HDF5 or to a Minari dataset (written under MINARI_DATASETS_PATH)."""
    from rise_data.share.h5io import ExportConfig, export_hdf5

    with _user_errors():
        fmt = _export_format(output, format)
        config = ExportConfig(
            store=store, output=output, format=fmt, compression=compression, force=force, progress=not quiet
        )
        if fmt == "minari":
            from rise_data.share.minari_io import export_minari

            out = export_minari(config)
            msg = (
                f"minari dataset '{out['dataset_id']}' at {out['path']}: {out['episodes']} episodes, "
                f"{out['steps']} steps, {out['bytes'] / 1e6:.1f} MB"
            )
        else:
            out = export_hdf5(config)
            msg = f"{out['output']}: {out['rows']} rows, {out['episodes']} episodes, {out['bytes'] / 1e6:.1f} MB"
            for name in out["skipped_embeddings"]:
                typer.echo(f"warning: embeddings '{name}' are incomplete and were not exported", err=True)
    echo(f"{msg} in {out['seconds']:.1f} s", quiet)


def _import_format(source: str, fmt: str) -> str:
    from pathlib import Path

    if fmt != "auto":
        if fmt not in ("hdf5", "minari"):
            raise ValueError(f"--format must be auto, hdf5 or minari, got '{fmt}'")
        return fmt
    if source.startswith("minari:"):
        return "minari"
    if source.lower().endswith((".h5", ".hdf5")):
        return "hdf5"
    p = Path(source)
    if (p / "metadata.json").exists() or (p / "data" / "metadata.json").exists():
        return "minari"
    if not p.exists():
        raise FileNotFoundError(f"{source} does not exist")
    raise ValueError(
        f"cannot tell the format of '{source}': give an .h5 file, minari:ID or a Minari dataset directory"
    )


@app.command("import")
def import_(
    source: Annotated[
        str,
        typer.Argument(help="A rise HDF5 export (.h5), minari:DATASET_ID, or a Minari dataset directory."),
    ],
    store: Annotated[str, typer.Argument(help="New store directory to create.")],
    format: Annotated[str, typer.Option(help="auto (from SOURCE), hdf5 or minari.")] = "auto",
    obs_key: Annotated[
        str | None, typer.Option(help="Minari Dict observations: the key holding the images.")
    ] = None,
    screen_size: Annotated[
        int, typer.Option(help="Minari images: side of the gray agent observation derived from them.")
    ] = 84,
    drop_keys: Annotated[
        bool,
        typer.Option(
            "--drop-keys",
            help="Minari Dict observations: leave out the keys besides the images (else refused).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Build a store from an HDF5 export or a Minari dataset (then encode it as usual)."""
    from rise_data.share.h5io import ImportConfig, import_hdf5

    with _user_errors():
        fmt = _import_format(source, format)
        config = ImportConfig(
            source=source,
            store=store,
            format=fmt,
            obs_key=obs_key,
            screen_size=screen_size,
            drop_keys=drop_keys,
            progress=not quiet,
        )
        if fmt == "minari":
            from rise_data.share.minari_io import import_minari

            out = import_minari(config)
        else:
            out = import_hdf5(config)
    echo(f"{out['store']}: {out['rows']} rows, {out['episodes']} episodes in {out['seconds']:.1f} s", quiet)


@app.command()
def merge(
    sources: Annotated[
        list[str], typer.Argument(help="Two or more stores of one env (directories, .zip, URLs).")
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="New store directory to create.")],
    drop_embeddings: Annotated[
        bool,
        typer.Option("--drop-embeddings", help="Merge trajectories only (when the encoder sets differ)."),
    ] = False,
) -> None:
    """Merge stores of the same env and encoder set into a new store (embeddings kept)."""
    from rise_data.share.edit import MergeConfig, summary
    from rise_data.share.edit import merge as run

    with _user_errors():
        out = run(MergeConfig(sources=tuple(sources), output=output, drop_embeddings=drop_embeddings))
    typer.echo(summary(out))


@app.command()
def split(
    store: Annotated[str, typer.Argument(help="Source store (directory, .zip or URL).")],
    train: Annotated[str, typer.Argument(help="New store directory for the first part.")],
    val: Annotated[str, typer.Argument(help="New store directory for the rest.")],
    fraction: Annotated[float, typer.Option(help="Share of episodes in TRAIN.")] = 0.9,
    seed: Annotated[int, typer.Option(help="Seed of the random episode partition.")] = 0,
) -> None:
    """Split a store's episodes at random into two new stores (train/val)."""
    from rise_data.share.edit import SplitConfig, summary
    from rise_data.share.edit import split as run

    with _user_errors():
        a, b = run(SplitConfig(store=store, train=train, val=val, fraction=fraction, seed=seed))
    typer.echo(summary(a))
    typer.echo(summary(b))


@app.command("filter")
def filter_(
    store: Annotated[str, typer.Argument(help="Source store (directory, .zip or URL).")],
    output: Annotated[str, typer.Argument(help="New store directory.")],
    min_return: Annotated[float | None, typer.Option(help="Keep episodes with return >= this.")] = None,
    max_return: Annotated[float | None, typer.Option(help="Keep episodes with return <= this.")] = None,
    min_length: Annotated[
        int | None, typer.Option(help="Keep episodes with at least this many steps.")
    ] = None,
    max_length: Annotated[
        int | None, typer.Option(help="Keep episodes with at most this many steps.")
    ] = None,
) -> None:
    """Keep the episodes whose return and length lie within bounds, in a new store."""
    from rise_data.share.edit import SelectConfig, filter_episodes, summary

    with _user_errors():
        out = filter_episodes(
            SelectConfig(
                store=store,
                output=output,
                min_return=min_return,
                max_return=max_return,
                min_length=min_length,
                max_length=max_length,
            )
        )
    typer.echo(summary(out))


@app.command()
def subset(
    store: Annotated[str, typer.Argument(help="Source store (directory, .zip or URL).")],
    output: Annotated[str, typer.Argument(help="New store directory.")],
    first: Annotated[int | None, typer.Option(help="The first N episodes.")] = None,
    episodes: Annotated[
        str | None, typer.Option(help="Episode numbers (0-based), e.g. 0,3,5-9 (ranges inclusive).")
    ] = None,
) -> None:
    """Copy the first N episodes, or listed ones, into a new store."""
    from rise_data.share.edit import SelectConfig, parse_episode_list, summary
    from rise_data.share.edit import subset as run

    with _user_errors():
        ids = tuple(parse_episode_list(episodes)) if episodes is not None else None
        out = run(SelectConfig(store=store, output=output, first=first, episodes=ids))
    typer.echo(summary(out))


# -- looking at a store: rise-data view (docs/viewer.md) -------------------------------------------
VIEW_OPTIONS = cli_options(ViewConfig, skip={"store"}, forms={"output": Form(aliases=("-o",))})


def view(
    store: Annotated[str, typer.Argument(help="Store directory, packed .zip or URL; or a run directory.")],
    **values,
) -> None:
    """Write a self-contained HTML page to look at a store (frames, timelines, embeddings); --serve: 127.0.0.1."""
    from rise_data.view import run_view

    with _user_errors():
        run_view(ViewConfig(store=store, **values), say=typer.echo)


app.command()(with_options(view, VIEW_OPTIONS))


if __name__ == "__main__":
    sys.exit(app())
