"""Editing stores: ``merge``, ``split``, ``filter`` and ``subset`` write new stores from whole episodes.

Every operation streams: episodes are read in batches of about ``batch_bytes`` (whole episodes; an
episode longer than the budget is read alone), appended with ``Store.append_episodes`` (so the output
has the layout ``create_store`` gives it and its commit point advances batch by batch) and hashed as
they are written, so the output is sealed (per-array sha256, docs/sharing.md) without reading it back.
Embeddings are copied row for row with their provenance. The output's ``history`` holds the sources'
history followed by one entry for the operation, with its frozen config and the episodes it took.
Outputs never carry the source's card: a different selection of episodes is different content.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from rise_data.encode.spec import upgrade_record
from rise_data.envs import env_difference, same_env
from rise_data.options import ConfigError, param
from rise_data.store import Episode, Store, StoreError, StoreLayout, create_store, open_store
from rise_data.store.checksums import RowHasher
from rise_data.store.format import ATTR, EPISODE_ARRAYS, config_to_json
from rise_data.store.lock import store_lock
from rise_data.store.write import episode_columns, write_rows

BATCH_BYTES = 64 << 20


class StoreBuilder:
    """A new store filled batch by batch with whole episodes (+ their embeddings rows), checksummed as written.

    ``embeddings`` maps name -> provenance (with ``dim`` and ``dtype``); ``meta`` holds extra root
    attributes to carry over (``history``, and for a faithful copy ``card`` and ``stats``).
    """

    def __init__(
        self,
        path: str,
        env: dict,
        frame_shape: tuple[int, ...] | None,
        layout: StoreLayout,
        embeddings: dict[str, dict] | None = None,
        meta: dict | None = None,
    ):
        self.store = create_store(path, env, tuple(env["obs_shape"]), frame_shape, layout)
        self.hasher = RowHasher()
        self.embeddings = dict(embeddings or {})
        for name, prov in self.embeddings.items():
            prov = upgrade_record(prov)  # an export of a format 1 store: written in the current layout
            keep = {k: v for k, v in prov.items() if k not in ("rows_done",)}
            dim = _record_spec(prov, f"embeddings '{name}'").dim
            self.store.create_embedding(name, dim, str(prov["dtype"]), keep, layout)
        if meta:
            self.store.write_meta(**meta)

    @classmethod
    def from_export(
        cls, path: str, meta: dict, frame_shape: tuple[int, ...] | None, embeddings: dict[str, dict]
    ) -> StoreBuilder:
        """A store for data exported by rise (HDF5 or Minari): the exported root attributes ``meta`` carry
        over the env, layout, history, and the card and statistics."""
        carry = {k: meta[k] for k in ("card", "stats") if k in meta}
        return cls(
            path,
            meta["env"],
            frame_shape,
            StoreLayout(**meta.get("layout", {})),
            embeddings,
            {**carry, "history": list(meta.get("history", []))},
        )

    def add(self, episodes: list[Episode], embeddings: dict[str, np.ndarray] | None = None) -> None:
        """Append whole episodes (committed), then their embeddings rows (``rows_done`` advances after)."""
        if not episodes:
            return
        store = self.store
        cols = episode_columns(
            episodes, first_row=store.rows, first_episode=store.num_episodes, with_frames=store.has_frames
        )
        n0, n1 = store.append_episodes(episodes)
        for name, _ in store.step_arrays():
            self.hasher.update(name, cols[name])
        embeddings = embeddings or {}
        if set(embeddings) != set(self.embeddings):
            raise StoreError(f"embeddings {sorted(embeddings)} given, {sorted(self.embeddings)} expected")
        for name, rows in embeddings.items():
            if len(rows) != n1 - n0:
                raise StoreError(f"embeddings '{name}': {len(rows)} rows for {n1 - n0} new rows")
            arr = store.group[f"embeddings/{name}"]
            rows = np.ascontiguousarray(rows, dtype=arr.dtype)
            write_rows(arr, n0, rows)
            meta = dict(arr.attrs)[ATTR]
            arr.attrs[ATTR] = {**meta, "rows_done": n1}
            self.hasher.update(f"embeddings/{name}", rows, tag=meta.get("created"))

    def finish(self, command: str, config: dict, **extra) -> Store:
        """Record the checksums and the history entry of the operation; returns the store."""
        store = self.store
        for name in EPISODE_ARRAYS:  # the episode index is small: hash it whole
            self.hasher.update(f"episodes/{name}", store.read(f"episodes/{name}"))
        for name in store.embedding_names():  # registered even when no rows were written
            self.hasher.update(
                f"embeddings/{name}", np.zeros((0, 1), np.uint8), tag=store.checksum_tag(f"embeddings/{name}")
            )
        store.record_checksums(self.hasher.digests(), replace=True)
        store.log_write(command, config, rows=store.rows, episodes=store.num_episodes, **extra)
        return store


# -- reading episodes -----------------------------------------------------------------------------
def row_bytes(source, names: Iterable[str]) -> int:
    """Uncompressed bytes of one row over the arrays ``names`` of a store (or an h5py file)."""
    total = 0
    for name in names:
        arr = source.group[name] if isinstance(source, Store) else source[name]
        total += int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize
    return total


def episode_batches(
    lengths: np.ndarray, indices: Iterable[int], per_row: int, budget: int
) -> Iterator[list[int]]:
    """Group episode ``indices`` (in the order given) into batches of about ``budget`` bytes (>= 1 episode)."""
    batch: list[int] = []
    size = 0
    for i in indices:
        n = (int(lengths[i]) + 1) * per_row
        if batch and size + n > budget:
            yield batch
            batch, size = [], 0
        batch.append(int(i))
        size += n
    if batch:
        yield batch


def read_episodes(
    read,
    starts: np.ndarray,
    lengths: np.ndarray,
    env_index: np.ndarray,
    batch: list[int],
    has_frames: bool,
    embeddings: list[str],
) -> tuple[list[Episode], dict[str, np.ndarray]]:
    """Episodes ``batch`` as :class:`Episode` objects plus their embeddings rows.

    ``read(name, start, stop)`` returns rows of an array (``Store.read``, or an h5py file's slicing);
    runs of consecutive episodes are read with one slice per array.
    """
    episodes: list[Episode] = []
    emb: dict[str, list[np.ndarray]] = {name: [] for name in embeddings}
    runs: list[list[int]] = []
    for i in batch:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    for run in runs:
        r0 = int(starts[run[0]])
        r1 = int(starts[run[-1]] + lengths[run[-1]] + 1)
        cols = {name: read(name, r0, r1) for name in ("obs", "action", "reward", "terminated", "truncated")}
        frames = read("frame", r0, r1) if has_frames else None
        for i in run:
            s, t = int(starts[i]) - r0, int(lengths[i])
            episodes.append(
                Episode(
                    obs=cols["obs"][s : s + t + 1],
                    frame=None if frames is None else frames[s : s + t + 1],
                    action=cols["action"][s : s + t],
                    reward=cols["reward"][s : s + t],
                    terminated=bool(cols["terminated"][s + t]),
                    truncated=bool(cols["truncated"][s + t]),
                    env_index=int(env_index[i]),
                )
            )
        for name in embeddings:
            emb[name].append(read(f"embeddings/{name}", r0, r1))
    return episodes, {name: np.concatenate(parts) for name, parts in emb.items()}


def complete_embeddings(store: Store) -> dict[str, dict]:
    """Provenance of the embeddings arrays encoded for every committed row (the ones worth copying)."""
    out = {}
    for name in store.embedding_names():
        meta = store.embedding_meta(name)
        if int(meta.get("rows_done", 0)) >= store.rows:
            out[name] = {k: v for k, v in meta.items() if k != "stats"}  # stats describe the source's rows
    return out


def copy_episodes(
    builder: StoreBuilder, source: Store, indices: Iterable[int], budget: int = BATCH_BYTES
) -> None:
    """Stream episodes ``indices`` of ``source`` (in that order) into ``builder``."""
    ep = source.episodes()
    names = list(builder.embeddings)
    per_row = row_bytes(source, [n for n, _ in source.step_arrays()] + [f"embeddings/{n}" for n in names])
    for batch in episode_batches(ep["length"], indices, per_row, budget):
        episodes, emb = read_episodes(
            source.read, ep["start"], ep["length"], ep["env_index"], batch, source.has_frames, names
        )
        builder.add(episodes, emb)


def _valid_source(path: str) -> Store:
    from rise_data.store.check import check_store

    errors = [p for p in check_store(path, fast=True) if p.severity == "error"]  # chunks: checked as read
    if errors:
        raise StoreError(f"{path} is not a valid store ({errors[0]}); run: rise-data check {path}")
    return open_store(path)


def _layout(store: Store) -> StoreLayout:
    return StoreLayout(**store.meta.get("layout", {}))


def _source_summary(store: Store) -> dict:
    card = store.meta.get("card") or {}
    return {"path": store.path, "id": card.get("id"), "rows": store.rows, "episodes": store.num_episodes}


def _frame_shape(store: Store) -> tuple[int, ...] | None:
    return tuple(store.group["frame"].shape[1:]) if store.has_frames else None


def episode_ranges(indices: Iterable[int]) -> list[list[int]]:
    """Sorted episode numbers as ``[[first, last+1], ...]`` runs (compact in ``history``)."""
    out: list[list[int]] = []
    for i in sorted(int(i) for i in indices):
        if out and i == out[-1][1]:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def parse_episode_list(text: str) -> list[int]:
    """``"0,3,5-9"`` -> [0, 3, 5, 6, 7, 8, 9] (ranges inclusive)."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        a, sep, b = part.partition("-")
        try:
            lo, hi = int(a), int(b) if sep else int(a)
        except ValueError:
            raise ConfigError(f"--episodes takes numbers and ranges like 0,3,5-9; got '{part}'") from None
        if hi < lo:
            raise ConfigError(f"--episodes range '{part}' is empty")
        out.extend(range(lo, hi + 1))
    return out


# -- operations -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SelectConfig:
    """``subset``/``filter``/``split`` of one store: what was asked (saved in the output's history)."""

    store: str = param(help="Source store (directory, .zip or URL).")
    output: str = param(help="New store directory.")
    first: int | None = param(None, "The first N episodes.")
    episodes: tuple[int, ...] | None = param(None, "Episode numbers (0-based) to copy.")
    min_return: float | None = param(None, "Keep episodes with return >= this.")
    max_return: float | None = param(None, "Keep episodes with return <= this.")
    min_length: int | None = param(None, "Keep episodes with at least this many steps.")
    max_length: int | None = param(None, "Keep episodes with at most this many steps.")
    batch_bytes: int = param(BATCH_BYTES, "Bytes of rows copied per block (bounds memory).")


def select(source: Store, indices: list[int], output: str, command: str, config: dict, budget: int) -> Store:
    """Write episodes ``indices`` (sorted, unique) of ``source`` to a new store at ``output``."""
    if not indices:
        raise StoreError(f"{command} selects no episode of {source.path}; nothing to write")
    with store_lock(output, command):  # the new store's writer, from its first file on
        builder = StoreBuilder(
            output,
            source.env,
            _frame_shape(source),
            _layout(source),
            complete_embeddings(source),
            {"history": list(source.meta.get("history", []))},
        )
        copy_episodes(builder, source, indices, budget)
        return builder.finish(
            command, config, source=_source_summary(source), source_episodes=episode_ranges(indices)
        )


def subset(config: SelectConfig) -> Store:
    """The first N episodes, or listed episode numbers, of a store."""
    if (config.first is None) == (config.episodes is None):
        raise ConfigError("give exactly one of --first N or --episodes LIST")
    source = _valid_source(config.store)
    n = source.num_episodes
    if config.first is not None:
        if config.first <= 0:
            raise ConfigError("--first must be positive")
        indices = list(range(min(config.first, n)))
    else:
        bad = [i for i in config.episodes if not 0 <= i < n]
        if bad:
            raise ConfigError(f"episode(s) {bad[:5]} not in {config.store}, which has episodes 0..{n - 1}")
        indices = sorted(set(config.episodes))
    return select(source, indices, config.output, "subset", config_to_json(config), config.batch_bytes)


def filter_episodes(config: SelectConfig) -> Store:
    """Episodes whose return and length lie within the given bounds (inclusive)."""
    bounds = (config.min_return, config.max_return, config.min_length, config.max_length)
    if all(b is None for b in bounds):
        raise ConfigError("give at least one of --min-return, --max-return, --min-length, --max-length")
    source = _valid_source(config.store)
    ep = source.episodes()
    keep = np.ones(source.num_episodes, bool)
    if config.min_return is not None:
        keep &= ep["return"] >= config.min_return
    if config.max_return is not None:
        keep &= ep["return"] <= config.max_return
    if config.min_length is not None:
        keep &= ep["length"] >= config.min_length
    if config.max_length is not None:
        keep &= ep["length"] <= config.max_length
    indices = np.flatnonzero(keep).tolist()
    return select(source, indices, config.output, "filter", config_to_json(config), config.batch_bytes)


@dataclass(frozen=True)
class SplitConfig:
    store: str = param(help="Source store (directory, .zip or URL).")
    train: str = param(help="New store directory for the first part.")
    val: str = param(help="New store directory for the rest.")
    fraction: float = param(0.9, "Share of episodes in TRAIN.")
    seed: int = param(0, "Seed of the random episode partition.")
    batch_bytes: int = param(BATCH_BYTES, "Bytes of rows copied per block (bounds memory).")


def split_indices(num_episodes: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random partition of episode numbers (each part sorted, so reads stay sequential)."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"--fraction must be in (0, 1), got {fraction}")
    n_train = int(round(fraction * num_episodes))
    if n_train == 0 or n_train == num_episodes:
        raise StoreError(
            f"splitting {num_episodes} episodes at fraction {fraction} leaves one side empty; "
            "collect more episodes or change --fraction"
        )
    perm = np.random.default_rng(seed).permutation(num_episodes)
    return sorted(perm[:n_train].tolist()), sorted(perm[n_train:].tolist())


def split(config: SplitConfig) -> tuple[Store, Store]:
    """Two stores (train, val) from a seeded random partition of the episodes."""
    if config.train == config.val:
        raise ConfigError("the train and val outputs must be different paths")
    source = _valid_source(config.store)
    train, val = split_indices(source.num_episodes, config.fraction, config.seed)
    cfg = config_to_json(config)
    a = select(source, train, config.train, "split", {**cfg, "part": "train"}, config.batch_bytes)
    b = select(source, val, config.val, "split", {**cfg, "part": "val"}, config.batch_bytes)
    return a, b


@dataclass(frozen=True)
class MergeConfig:
    sources: tuple[str, ...] = param(help="Two or more stores of one env (directories, .zip, URLs).")
    output: str = param(help="New store directory to create.")
    drop_embeddings: bool = param(False, "Merge trajectories only (when the encoder sets differ).")
    batch_bytes: int = param(BATCH_BYTES, "Bytes of rows copied per block (bounds memory).")


def merge(config: MergeConfig) -> Store:
    """One store holding every episode of the sources, in order (same env; same complete embeddings)."""
    if len(config.sources) < 2:
        raise ConfigError("merge needs at least two source stores")
    stores = [_valid_source(p) for p in config.sources]
    first = stores[0]
    for s in stores[1:]:
        if not same_env(first.env, s.env):
            raise StoreError(
                f"{s.path} holds a different env than {first.path} ({env_difference(first.env, s.env)}); "
                "only stores of one env merge"
            )
        if s.has_frames != first.has_frames or _frame_shape(s) != _frame_shape(first):
            raise StoreError(f"{s.path} and {first.path} differ in RGB frames; only like stores merge")
    embeddings: dict[str, dict] = {}
    if not config.drop_embeddings:
        embeddings = _common_embeddings(stores)
    with store_lock(config.output, "merge"):
        builder = StoreBuilder(
            config.output,
            first.env,
            _frame_shape(first),
            _layout(first),
            embeddings,
            {"history": _union_history(stores)},
        )
        sources = []
        for s in stores:
            row0 = builder.store.rows
            copy_episodes(builder, s, range(s.num_episodes), config.batch_bytes)
            sources.append({**_source_summary(s), "first_row": row0, "end_row": builder.store.rows})
        return builder.finish("merge", config_to_json(config), sources=sources)


def _union_history(stores: list[Store]) -> list[dict]:
    """The sources' history entries in order, each once (sources split from one store share a past)."""
    seen, out = set(), []
    for s in stores:
        for h in s.meta.get("history", []):
            key = json.dumps(h, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                out.append(h)
    return out


def _common_embeddings(stores: list[Store]) -> dict[str, dict]:
    """The embeddings all sources share, made the same way and complete; refuses any other set."""
    first = stores[0]
    names = first.embedding_names()
    for s in stores:
        if s.embedding_names() != names:
            raise StoreError(
                f"{s.path} has embeddings {s.embedding_names()}, {first.path} has {names}; "
                "merge needs the same encoder set (or pass --drop-embeddings)"
            )
        for name in names:
            meta = s.embedding_meta(name)
            spec = _record_spec(meta, f"embeddings '{name}' of {s.path}")
            if int(meta.get("rows_done", 0)) < s.rows:
                raise StoreError(
                    f"embeddings '{name}' of {s.path} are incomplete; finish them with rise-data encode {s.path} "
                    f"--encoder {spec.name} --name {name} (or pass --drop-embeddings)"
                )
            ref = first.embedding_meta(name)
            diff = _record_spec(ref, f"embeddings '{name}' of {first.path}").differences(spec)
            diff += ["dtype"] if meta.get("dtype") != ref.get("dtype") else []
            if diff:
                raise StoreError(
                    f"embeddings '{name}' of {s.path} and {first.path} differ in {', '.join(diff)}; "
                    "merge needs embeddings made the same way (or pass --drop-embeddings)"
                )
    out = {}
    for name in names:
        meta = first.embedding_meta(name)
        out[name] = {k: v for k, v in meta.items() if k != "stats"}
    return out


def _record_spec(record: dict, where: str):
    """The EncoderSpec of an embeddings record."""
    from rise_data.encode.spec import EncoderError, record_encoder

    try:
        return record_encoder(record, where)
    except EncoderError as e:
        raise StoreError(str(e)) from None


def summary(store: Store) -> str:
    return f"{store.path}: {store.num_episodes} episodes, {store.rows} rows" + (
        f", embeddings {', '.join(store.embedding_names())}" if store.embedding_names() else ""
    )
