"""``rise-data``: collect trajectories, encode frames with frozen encoders, inspect and validate stores.

Every command's options are the fields of config dataclasses (help declared once there, see
:mod:`rise_data.options`): the library's config of what the command does, plus :class:`Quiet` /
:class:`Printing` for how it prints. A command builds them, calls the library and prints the result.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path

import typer

from rise_data.cli_base import JSON, QUIET, Printing, Quiet, command, echo, flag, new_app, user_errors
from rise_data.collect.config import CollectConfig
from rise_data.encode.config import EncodeConfig
from rise_data.options import Form, param
from rise_data.share.card import CardConfig
from rise_data.share.edit import MergeConfig, SelectConfig, SplitConfig
from rise_data.share.h5io import ExportConfig, ImportConfig
from rise_data.share.minari_io import MinariImportConfig
from rise_data.share.pack import PackConfig
from rise_data.share.stats import StatsConfig
from rise_data.store.format import StoreLayout
from rise_data.view.config import ViewConfig

app = new_app(
    "rise-data", "Datasets for RISE: Zarr v3 stores of trajectories, frames and frozen-encoder embeddings."
)
ARG = Form(argument=True)


def _print_config(config) -> None:
    if not getattr(config, "progress", True):  # --quiet: nothing but errors
        return
    typer.echo(f"{type(config).__name__}: " + json.dumps(dataclasses.asdict(config), default=str), err=True)


@dataclasses.dataclass(frozen=True)
class Target:
    """The one store a command reads or rewrites."""

    store: str = param(help="Store directory, packed .zip or URL.")


@dataclasses.dataclass(frozen=True)
class CollectInput:
    """What ``collect`` reads from the command line in another form than :class:`CollectConfig` keeps."""

    env_option: list[str] = param(
        factory=list,
        help="Env/preprocessing override KEY=VALUE (repeatable), e.g. repeat_action_probability=0.0.",
    )
    envs: int | None = param(None, "Deprecated: --num-envs.")
    quiet: bool = param(False, "Print only errors (no progress bar).")


COLLECT_SKIP = {"env_options", "progress", *(f"layout.{f.name}" for f in dataclasses.fields(StoreLayout))}
WRAPPER_HELP = (
    "Gymnasium wrapper NAME[=ARG] (repeatable, applied in order), e.g. render, frame_skip=4, "
    "resize=64x64, image_key=screen; see docs/envs.md."
)


@command(
    app,
    CollectConfig,
    CollectInput,
    skip=COLLECT_SKIP,
    forms={
        "env_id": ARG,
        "store": ARG,
        "wrappers": Form(names=("--wrapper",), help=WRAPPER_HELP),
        "envs": Form(hidden=True),
        "quiet": QUIET,
    },
)
def collect(config: CollectConfig, given: CollectInput) -> None:
    """Collect trajectories from an environment into a store.

    Holds the store's writer lock (a second writer is refused). Every finished episode is committed as soon
    as the writer thread is free; a kill -9 loses only the running episodes and those not yet committed.
    """
    from rise_data.collect import collect as run
    from rise_data.envs import parse_env_options

    with user_errors():
        if given.envs is not None:
            warnings.warn("--envs is deprecated: use --num-envs (the name rise-agent uses)", stacklevel=1)
        config = dataclasses.replace(
            config,
            env_options=parse_env_options(given.env_option),
            num_envs=config.num_envs if given.envs is None else given.envs,
            progress=not given.quiet,
        )
        _print_config(config)
        out = run(config)
    echo(
        f"{out['store']}: +{out['steps']} steps, +{out['episodes']} episodes in {out['seconds']:.1f} s "
        f"({out['steps'] / max(out['seconds'], 1e-9):.0f} steps/s); total {out['total_rows']} rows, "
        f"{out['total_episodes']} episodes" + (" (interrupted)" if out["interrupted"] else ""),
        given.quiet,  # --quiet: nothing but errors
    )


@command(
    app,
    EncodeConfig,
    Quiet,
    skip={"progress"},
    forms={"store": ARG, "quiet": Form(names=QUIET.names, help="Print only errors (no progress bar).")},
)
def encode(config: EncodeConfig, printing: Quiet) -> None:
    """Embed every frame of a store once with a frozen encoder (resumable).

    Scale-out: torchrun --nproc-per-node N -m rise_data.cli encode STORE ... runs one rank per process
    (each on its own GPU, or CPU), each encoding whole chunks of its own rows (docs/scale.md).
    """
    from rise_data.encode import encode as run

    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun, one rank speaks for the job
    with user_errors():
        config = dataclasses.replace(config, progress=not printing.quiet)
        if rank0:
            _print_config(config)
        out = run(config)
    if not rank0 or printing.quiet:  # --quiet: nothing but errors
        return
    if out["rows"] == 0 and out["complete"]:
        typer.echo(f"{config.store}: embeddings '{out['name']}' are already complete")
    else:
        typer.echo(
            f"{config.store}: embeddings '{out['name']}' +{out['rows']} rows in {out['seconds']:.1f} s "
            f"({out['rows_per_s']:.0f} frames/s on {out['device']}"
            + (f" and {out['ranks'] - 1} more ranks)" if out["ranks"] > 1 else ")")
            + ("" if out["complete"] else " (incomplete)")
        )


@command(
    app,
    Target,
    Printing,
    skip={"quiet"},
    forms={"store": Form(argument=True, help="Store path."), "as_json": JSON},
)
def info(target: Target, printing: Printing) -> None:
    """Show steps, episodes, returns, arrays and encoders of a store."""
    from rise_data.store import open_store
    from rise_data.store.info import format_info, store_info

    with user_errors():
        data = store_info(open_store(target.store))
    typer.echo(json.dumps(data, indent=2, default=str) if printing.as_json else format_info(data))


@dataclasses.dataclass(frozen=True)
class CheckDepth:
    """How far ``check`` reads."""

    fast: bool = param(False, "Structure only: do not decode image and embedding chunks.")


@command(
    app,
    Target,
    CheckDepth,
    Printing,
    forms={
        "store": ARG,
        "fast": flag("fast"),
        "as_json": Form(names=JSON.names, help="Print the report as JSON on stdout."),
        "quiet": QUIET,
    },
)
def check(target: Target, depth: CheckDepth, printing: Printing) -> None:
    """Validate a store: metadata, episode index, every chunk decoded and, if sealed, checksums verified.

    Exit code 0: valid (warnings allowed); 1: invalid data; 2: usage error; 3: a bug in rise.
    """
    from rise_data.cli_base import EXIT_INVALID
    from rise_data.store.check import check_store, report

    store, fast, quiet = target.store, depth.fast, printing.quiet
    with user_errors():
        problems = check_store(store, fast=fast, progress=not (quiet or printing.as_json))
        result = report(store, problems, fast)
    if printing.as_json:
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


STORE_DIR = Form(argument=True, help="Store directory.")


@command(app, Target, Quiet, forms={"store": STORE_DIR, "quiet": QUIET})
def repair(target: Target, printing: Quiet) -> None:
    """Trim a killed writer's uncommitted tails and temp files, so array shapes equal the committed rows.

    Committed data is never touched. Takes the store's writer lock: refused while a writer runs.
    """
    from rise_data.store.maintain import repair_store

    with user_errors():
        out = repair_store(target.store)
    echo(
        f"{target.store}: dropped {out['rows_dropped']} uncommitted rows, {out['episodes_dropped']} uncommitted "
        f"episode entries, {out['temp_files_removed']} temp files",
        printing.quiet,
    )


# -- sharing: identity and cards, packing, integrity, statistics, export/import, editing ----------
# (docs/sharing.md). Every command that only reads takes a store directory, a packed .zip or a URL.


@dataclasses.dataclass(frozen=True)
class CardOutput:
    """What ``card`` reads as text, and where it writes the card."""

    ref_score: list[str] = param(
        factory=list, help="Reference score NAME=VALUE (repeatable), e.g. random=-20.7 expert=21."
    )
    output: str | None = param(None, "Write the card to this file.")
    as_json: bool = param(False, "Print the card's data as JSON.")


@command(
    app,
    CardConfig,
    CardOutput,
    skip={"reference_scores"},
    forms={"store": ARG, "force": flag("force"), "output": Form(aliases=("-o",)), "as_json": JSON},
)
def card(config: CardConfig, out: CardOutput) -> None:
    """Print a store's dataset card (markdown); --id/--author/--license/... set those fields first."""
    from rise_data.share.card import card as run
    from rise_data.share.card import parse_scores, render_card

    with user_errors():
        data = run(dataclasses.replace(config, reference_scores=parse_scores(out.ref_score)))
        text = json.dumps(data, indent=2, default=str) if out.as_json else render_card(data)
        if out.output:
            Path(out.output).write_text(text + "\n")
    typer.echo(f"{config.store}: card written to {out.output}" if out.output else text)


@command(app, Target, Quiet, forms={"store": STORE_DIR, "quiet": QUIET})
def seal(target: Target, printing: Quiet) -> None:
    """Record per-array sha256 checksums (streaming) for check to verify."""
    from rise_data.store.maintain import seal_store

    with user_errors():
        out = seal_store(target.store, progress=not printing.quiet)
    echo(
        f"{target.store}: sealed {out['arrays']} arrays, {out['rows']} rows, in {out['seconds']:.1f} s",
        printing.quiet,
    )


@command(app, StatsConfig, Printing, skip={"progress"}, forms={"store": ARG, "as_json": JSON, "quiet": QUIET})
def stats(config: StatsConfig, printing: Printing) -> None:
    """Normalisation statistics (obs/frame/reward/returns; per-dimension for embeddings), streaming."""
    from rise_data.share.stats import format_stats
    from rise_data.share.stats import stats as run

    quiet = printing.quiet
    with user_errors():
        root, emb, written = run(dataclasses.replace(config, progress=not (quiet or printing.as_json)))
    if printing.as_json:
        typer.echo(json.dumps({**root, "embeddings": emb}, indent=2))
    else:
        echo(format_stats(root, emb), quiet)
        if config.write and not written:
            echo(f"{config.store} is read-only: statistics printed, not recorded", quiet, err=True)


@command(
    app,
    PackConfig,
    Quiet,
    skip={"progress"},
    forms={"store": ARG, "output": ARG, "force": flag("force"), "quiet": QUIET},
)
def pack(config: PackConfig, printing: Quiet) -> None:
    """Pack a store directory into one .zip that every read-only command (and open_store) reads in place.

    Only the store's own files go in (no locks, temp files or other files; a store holding a symbolic
    link is refused).
    """
    from rise_data.share.pack import pack as run

    quiet = printing.quiet
    with user_errors():
        out = run(dataclasses.replace(config, progress=not quiet))
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


@command(
    app,
    ExportConfig,
    Quiet,
    skip={"dataset_id", "progress"},
    forms={
        "store": ARG,
        "output": ARG,
        "compression": Form(help="HDF5: gzip (level 1), lzf or none."),
        "force": flag("force"),
        "quiet": QUIET,
    },
)
def export(config: ExportConfig, printing: Quiet) -> None:
    """Export a store to HDF5 or to a Minari dataset (written under MINARI_DATASETS_PATH)."""
    from rise_data.share.transfer import export_store

    with user_errors():
        out = export_store(dataclasses.replace(config, progress=not printing.quiet))
    if out["format"] == "minari":
        msg = (
            f"minari dataset '{out['dataset_id']}' at {out['path']}: {out['episodes']} episodes, "
            f"{out['steps']} steps, {out['bytes'] / 1e6:.1f} MB"
        )
    else:
        msg = f"{out['output']}: {out['rows']} rows, {out['episodes']} episodes, {out['bytes'] / 1e6:.1f} MB"
        for name in out["skipped_embeddings"]:
            typer.echo(f"warning: embeddings '{name}' are incomplete and were not exported", err=True)
    echo(f"{msg} in {out['seconds']:.1f} s", printing.quiet)


@command(
    app,
    ImportConfig,
    MinariImportConfig,
    Quiet,
    name="import",
    skip={"batch_bytes", "progress"},
    forms={"source": ARG, "store": ARG, "drop_keys": flag("drop-keys"), "quiet": QUIET},
)
def import_(config: ImportConfig, mapping: MinariImportConfig, printing: Quiet) -> None:
    """Build a store from an HDF5 export or a Minari dataset (then encode it as usual)."""
    from rise_data.share.transfer import import_store

    with user_errors():
        out = import_store(dataclasses.replace(config, progress=not printing.quiet), mapping)
    echo(
        f"{out['store']}: {out['rows']} rows, {out['episodes']} episodes in {out['seconds']:.1f} s",
        printing.quiet,
    )


@command(
    app,
    MergeConfig,
    skip={"batch_bytes"},
    forms={
        "sources": ARG,
        "output": Form(names=("--output", "-o")),
        "drop_embeddings": flag("drop-embeddings"),
    },
)
def merge(config: MergeConfig) -> None:
    """Merge stores of the same env and encoder set into a new store (embeddings kept)."""
    from rise_data.share.edit import merge as run
    from rise_data.share.edit import summary

    with user_errors():
        out = run(config)
    typer.echo(summary(out))


@command(app, SplitConfig, skip={"batch_bytes"}, forms={"store": ARG, "train": ARG, "val": ARG})
def split(config: SplitConfig) -> None:
    """Split a store's episodes at random into two new stores (train/val)."""
    from rise_data.share.edit import split as run
    from rise_data.share.edit import summary

    with user_errors():
        a, b = run(config)
    typer.echo(summary(a))
    typer.echo(summary(b))


SELECT = {"store": ARG, "output": ARG}


@command(app, SelectConfig, name="filter", skip={"first", "episodes", "batch_bytes"}, forms=SELECT)
def filter_(config: SelectConfig) -> None:
    """Keep the episodes whose return and length lie within bounds, in a new store."""
    from rise_data.share.edit import filter_episodes, summary

    with user_errors():
        out = filter_episodes(config)
    typer.echo(summary(out))


@dataclasses.dataclass(frozen=True)
class EpisodeList:
    """Episode numbers as typed: ranges inclusive."""

    episode_list: str | None = param(None, "Episode numbers (0-based), e.g. 0,3,5-9 (ranges inclusive).")


@command(
    app,
    SelectConfig,
    EpisodeList,
    skip={"episodes", "min_return", "max_return", "min_length", "max_length", "batch_bytes"},
    forms={**SELECT, "episode_list": Form(names=("--episodes",))},
)
def subset(config: SelectConfig, given: EpisodeList) -> None:
    """Copy the first N episodes, or listed ones, into a new store."""
    from rise_data.share.edit import parse_episode_list, summary
    from rise_data.share.edit import subset as run

    with user_errors():
        if given.episode_list is not None:
            config = dataclasses.replace(config, episodes=tuple(parse_episode_list(given.episode_list)))
        out = run(config)
    typer.echo(summary(out))


# -- looking at a store: rise-data view (docs/viewer.md) -------------------------------------------
@command(
    app,
    ViewConfig,
    forms={
        "store": Form(argument=True, help="Store directory, packed .zip or URL; or a run directory."),
        "output": Form(aliases=("-o",)),
    },
)
def view(config: ViewConfig) -> None:
    """Write a self-contained HTML page to look at a store (frames, timelines, embeddings); --serve: 127.0.0.1."""
    from rise_data.view import run_view

    with user_errors():
        run_view(config, say=typer.echo)


if __name__ == "__main__":
    sys.exit(app())
