"""Minari export and import (``minari`` 0.5: ``create_dataset_from_buffers``, ``load_dataset``).

Export mapping (docs/sharing.md#minari): one Minari episode per store episode, in Minari's HDF5 layout
(``episode_<i>`` groups, read by Minari's own loader) but written here with gzip-compressed chunks:
Minari writes images raw (or as lossy JPEG), which made an export ~77x its packed zip. The dataset's
``env_spec`` is the gymnasium env with the kwargs rise used (frameskip, sticky actions, frame limit), so
``recover_environment()`` builds it; rise's own preprocessing is in the ``rise`` metadata.

- ``observations``: a Dict of ``obs`` (T+1, 84, 84) uint8, ``frame`` (T+1, H, W, 3) uint8 when the
  store has frames, and ``embeddings`` (a Dict of each complete embeddings array, (T+1, D));
- ``actions`` (T,) int64 (``Discrete(n_actions)``), ``rewards`` (T,) float32;
- ``terminations``/``truncations`` (T,) bool, set on the last step only, as the store's flags;
- episode metadata ``rise_env_index``; dataset metadata ``rise``: the store's root attribute (env,
  card, history, layout, checksums) and the embeddings' provenance, so an import restores the store
  bit for bit; ``author``/``description``/``algorithm_name`` come from the card and the policy, and
  ``ref_min_score``/``ref_max_score`` from the card's reference scores ``random``/``expert``.

Import reads that back, or maps a foreign Minari dataset with image observations: RGB (H, W, 3) images
become ``frame`` and their gray ``screen_size`` resize (the collector's transform) becomes ``obs``;
gray images become ``obs`` (resized) with no frames. Actions must be Discrete. The dataset's env spec
(id, kwargs, episode step limit, wrappers) is kept in the store's env. Other Dict observation keys
have no place in a rise store: the import leaves them out when ``obs_key`` names the images (or
``drop_keys`` says to), and otherwise refuses them in one line naming ``--obs-key``.
Arrow-format datasets import when ``pyarrow`` is installed (Minari reads them); otherwise one line says so.
"""

from __future__ import annotations

import json
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rise_data import __version__
from rise_data.options import ConfigError, param
from rise_data.share.edit import BATCH_BYTES, StoreBuilder, episode_batches, read_episodes, row_bytes
from rise_data.share.h5io import ExportConfig, ImportConfig, _compare_checksums
from rise_data.store import CorruptStoreError, Episode, StoreError, StoreLayout, open_store
from rise_data.store.checksums import RowHasher
from rise_data.store.format import EPISODE_ARRAYS, config_to_json, now_iso
from rise_data.store.write import episode_columns

MINARI_PREFIX = "minari:"


@dataclass(frozen=True)
class MinariImportConfig:
    """How a foreign Minari dataset's observations map to a store (a rise export is restored as it was)."""

    obs_key: str | None = param(
        None, "Minari Dict observations: the key holding the images (the rest is left out)."
    )
    screen_size: int = param(84, "Minari images: side of the gray agent observation derived from them.")
    drop_keys: bool = param(
        False, "Minari Dict observations: import the first image key without the rest (else refused)."
    )


@contextmanager
def _quiet():
    """Minari warns about every optional metadata field left unset; rise sets what it has."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _spaces(store, embeddings: list[str]):
    import gymnasium as gym

    obs = {"obs": gym.spaces.Box(0, 255, tuple(store.env["obs_shape"]), np.uint8)}
    if store.has_frames:
        obs["frame"] = gym.spaces.Box(0, 255, tuple(store.group["frame"].shape[1:]), np.uint8)
    if embeddings:
        obs["embeddings"] = gym.spaces.Dict(
            {
                n: gym.spaces.Box(
                    -np.inf,
                    np.inf,
                    (store.group[f"embeddings/{n}"].shape[1],),
                    store.group[f"embeddings/{n}"].dtype,
                )
                for n in embeddings
            }
        )
    return gym.spaces.Dict(obs), gym.spaces.Discrete(int(store.env["n_actions"]))


def export_minari(config: ExportConfig) -> dict:
    """Write a store as a Minari dataset under ``MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``)."""
    store = open_store(config.store)
    card = store.meta.get("card") or {}
    dataset_id, path = _export_target(config, card)
    ep = store.episodes()
    if np.any(ep["length"] == 0):
        first = int(np.argmax(ep["length"] == 0))
        raise StoreError(
            f"episode {first} of {config.store} has no steps, which Minari cannot store; drop such episodes "
            "first: rise-data filter STORE NEW --min-length 1"
        )
    t0 = time.perf_counter()
    names = [
        n for n in store.embedding_names() if int(store.embedding_meta(n).get("rows_done", 0)) >= store.rows
    ]
    ds = _create_dataset(store, dataset_id, card, names)
    hasher = RowHasher()  # checksums of what is exported, for the import to verify
    done = _write_batches(store, ep, names, ds, hasher, config.progress)
    _record_metadata(store, config, ds, ep, names, hasher, card, dataset_id, done)
    return {
        "dataset_id": dataset_id,
        "path": str(path),
        "episodes": done,
        "steps": int(np.sum(ep["length"])),
        "bytes": _folder_bytes(path),
        "seconds": time.perf_counter() - t0,
    }


def _export_target(config: ExportConfig, card: dict) -> tuple[str, Path]:
    """The dataset id (option, output name or card id) and its folder, cleared with --force."""
    import minari
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.storage.datasets_root_dir import get_dataset_path

    output = config.output.removeprefix(MINARI_PREFIX) if config.output else None
    dataset_id = config.dataset_id or output or card.get("id")
    if not dataset_id:
        raise ConfigError("name the Minari dataset: rise-data export STORE minari:NAME-v0 (or set a card id)")
    try:
        parse_dataset_id(dataset_id)
    except Exception:
        raise ConfigError(
            f"'{dataset_id}' is not a Minari dataset id: name it [namespace/]name-vN, e.g. minari:mygame-v0"
        ) from None
    path = get_dataset_path(dataset_id)
    if path.exists():
        if not config.force:
            raise StoreError(f"Minari dataset '{dataset_id}' exists at {path}; pass --force to replace it")
        with _quiet():
            minari.delete_dataset(dataset_id)
    return dataset_id, path


def _create_dataset(store, dataset_id: str, card: dict, names: list[str]):
    """An empty Minari dataset with the store's spaces, env spec, policies and card."""
    import minari

    observation_space, action_space = _spaces(store, names)
    policies = [
        h["policy"].get("name")
        for h in store.meta.get("history", [])
        if h.get("command") == "collect" and h.get("policy")
    ]
    with _quiet():
        return minari.create_dataset_from_buffers(
            dataset_id,
            [],
            env=gym_env_spec(store.env),
            observation_space=observation_space,
            action_space=action_space,
            algorithm_name="+".join(dict.fromkeys(policies)) or None,
            author=card.get("author"),
            description=card.get("description")
            or f"{store.env['id']} trajectories exported by rise {__version__}",
            data_format="hdf5",
            jpeg_encoding=False,
        )


def _write_batches(store, ep: dict, names: list[str], ds, hasher: RowHasher, progress: bool) -> int:
    """Stream whole episodes in bounded batches into the dataset; returns the episodes written."""
    per_row = row_bytes(store, [n for n, _ in store.step_arrays()] + [f"embeddings/{n}" for n in names])
    for k in names:
        hasher.update(
            f"embeddings/{k}", np.zeros((0, 1), np.uint8), tag=store.checksum_tag(f"embeddings/{k}")
        )
    done = 0
    bar = tqdm(total=store.num_episodes, unit="episode", desc="export", disable=not progress)
    for batch in episode_batches(ep["length"], range(store.num_episodes), per_row, BATCH_BYTES):
        episodes, emb = read_episodes(
            store.read, ep["start"], ep["length"], ep["env_index"], batch, store.has_frames, names
        )
        cols = episode_columns(
            episodes,
            first_row=int(ep["start"][batch[0]]),
            first_episode=batch[0],
            with_frames=store.has_frames,
        )
        for name, _ in store.step_arrays():
            hasher.update(name, cols[name])
        for k in names:
            hasher.update(f"embeddings/{k}", emb[k])
        write_episodes(ds.storage, _buffers(episodes, emb, names), first_id=batch[0])
        bar.update(len(batch))
        with _quiet():
            ds.storage.update_episode_metadata(
                [
                    {"rise_env_index": int(ep["env_index"][i]), "rise_terminated": bool(e.terminated)}
                    for i, e in zip(batch, episodes, strict=True)
                ],
                episode_indices=batch,
            )
        done += len(batch)
    bar.close()
    return done


def _buffers(episodes, emb: dict, names: list[str]) -> list:
    """Minari EpisodeBuffers of one batch (observations: obs, frame, embeddings)."""
    from minari.data_collector import EpisodeBuffer

    buffers, row = [], 0
    for e in episodes:
        n = e.length + 1
        observations = {"obs": np.asarray(e.obs)}
        if e.frame is not None:
            observations["frame"] = np.asarray(e.frame)
        if names:
            observations["embeddings"] = {k: emb[k][row : row + n] for k in names}
        row += n
        last = np.zeros(e.length, bool)
        last[-1:] = True
        buffers.append(
            EpisodeBuffer(
                observations=observations,
                actions=np.asarray(e.action, np.int64),
                rewards=np.asarray(e.reward, np.float32),
                terminations=last & e.terminated,
                truncations=last & e.truncated,
                infos={},  # Minari's EpisodeData expects a dict
            )
        )
    return buffers


def _record_metadata(store, config, ds, ep, names, hasher, card, dataset_id: str, done: int) -> None:
    """rise's own record (history, checksums, embeddings' specs) and reference scores in Minari's metadata."""
    meta = dict(store.meta)
    entry = {
        "command": "export",
        "time": now_iso(),
        "rise_version": __version__,
        "config": config_to_json(config),
        "format": "minari",
        "dataset_id": dataset_id,
    }
    meta["history"] = [*meta.get("history", []), entry]
    for k in EPISODE_ARRAYS:
        hasher.update(f"episodes/{k}", ep[k])
    meta["checksums"] = {"algorithm": "sha256", "time": now_iso(), "arrays": hasher.digests()}
    extra = {"rise": {**meta, "embeddings": {n: store.embedding_meta(n) for n in names}}}
    scores = card.get("reference_scores") or {}
    if "random" in scores or "min" in scores:
        extra["ref_min_score"] = float(scores.get("random", scores.get("min")))
    if "expert" in scores or "max" in scores:
        extra["ref_max_score"] = float(scores.get("expert", scores.get("max")))
    steps = int(np.sum(ep["length"]))
    extra.update(total_episodes=done, total_steps=steps, dataset_size=ds.storage.get_size())
    with _quiet():
        ds.storage.update_metadata(extra)


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def write_episodes(storage, buffers: list, first_id: int) -> None:
    """Append episodes to a Minari HDF5 dataset in Minari's layout, with gzip-compressed chunks.

    The same groups and datasets Minari's ``HDF5Storage.update_episodes`` writes (``episode_<id>`` with
    ``id``/``total_steps`` attributes, ``observations`` (a group for Dict spaces), ``actions``,
    ``rewards``, ``terminations``, ``truncations``, ``infos``), so Minari's loader reads them; only the
    storage differs: image chunks of ``IMAGE_CHUNK_ROWS`` rows, gzip level ``GZIP_LEVEL`` (HDF5's built-in
    filter, so every HDF5 reader decodes it). The dataset's totals are set once at the end of the export.
    """
    import h5py

    with h5py.File(Path(storage.data_path) / "main_data.hdf5", "a", track_order=True) as f:
        for i, b in enumerate(buffers):
            g = f.create_group(f"episode_{first_id + i}")
            g.attrs["id"] = first_id + i
            g.attrs["total_steps"] = len(b.rewards)
            _write_leaves(g.create_group("observations"), b.observations)
            for key in ("actions", "rewards", "terminations", "truncations"):
                _write_leaves(g, {key: getattr(b, key)})
            g.create_group("infos")


IMAGE_CHUNK_ROWS = 16
# gzip (deflate) is the compressor every HDF5 reader has; its 32 kB window cannot see the previous frame,
# so it needs its thorough levels: on 2,000 Pong frames (201.6 MB raw) level 1 -> 1.61 MB, 4 -> 0.70 MB,
# 9 -> 0.48 MB at ~830 rows/s written (2-core CPU), so level 9 keeps an export within ~2x of the zip.
GZIP_LEVEL = 9


def _write_leaves(group, data: dict) -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            _write_leaves(group.create_group(key), value)
            continue
        value = np.asarray(value)
        rows = max(1, min(len(value), IMAGE_CHUNK_ROWS if value.ndim > 1 else 1 << 16))
        group.create_dataset(
            key,
            data=value,
            chunks=(rows, *value.shape[1:]) if len(value) else None,
            maxshape=(None, *value.shape[1:]),
            compression="gzip" if len(value) else None,
            compression_opts=GZIP_LEVEL if len(value) else None,
        )


def gym_env_spec(env: dict):
    """The gymnasium EnvSpec of a store's env (what Minari records for ``recover_environment()``), or None.

    Families register how their spec maps to a gymnasium one in ``GYM_SPECS``; a store of an env family
    gymnasium cannot build (a plug-in factory, a probe env) exports without one.
    """
    family = env.get("family") or env.get("kind")
    make = GYM_SPECS.get(family)
    return None if make is None else make(env)


def _atari_gym_spec(env: dict):
    """``ALE/Pong-v5`` with the emulator kwargs rise used (rise's max-pool, no-ops and life handling are
    preprocessing, recorded in the ``rise`` metadata, not gymnasium kwargs of the ALE env)."""
    import dataclasses

    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)  # registers the ALE/ ids (importing ale_py alone is enough at run time)
    kw = env.get("kwargs") or {}
    base = gym.spec(env["id"])
    ale = ("frameskip", "repeat_action_probability", "full_action_space", "max_num_frames_per_episode")
    return dataclasses.replace(base, kwargs={**base.kwargs, **{k: kw[k] for k in ale if k in kw}})


def _gymnasium_gym_spec(env: dict):
    import dataclasses

    import gymnasium as gym

    if env.get("factory") or ":" in env["id"]:
        return None  # a plug-in: gymnasium would have to import the user's module
    try:
        base = gym.spec(env["id"])
    except gym.error.Error:
        return None
    return dataclasses.replace(base, kwargs={**base.kwargs, **(env.get("kwargs") or {})})


GYM_SPECS = {"atari": _atari_gym_spec, "gymnasium": _gymnasium_gym_spec}


def open_minari(source: str):
    """A MinariDataset from ``minari:ID`` (local datasets) or a dataset directory (with or without ``data/``).

    A dataset whose storage reader is not installed (Arrow and Parquet need ``pyarrow``) is refused in one
    line naming the install command, whichever way it was named.
    """
    import minari

    with _quiet():
        if source.startswith(MINARI_PREFIX):
            dataset_id = source.removeprefix(MINARI_PREFIX)
            try:
                return _reading(source, lambda: minari.load_dataset(dataset_id))
            except FileNotFoundError:
                raise StoreError(
                    f"no local Minari dataset '{dataset_id}' (MINARI_DATASETS_PATH or ~/.minari/datasets); "
                    f"download it first with: minari download {dataset_id}"
                ) from None
        path = Path(source)
        data = path / "data" if (path / "data" / "metadata.json").exists() else path
        if not (data / "metadata.json").exists():
            raise StoreError(f"{source} is not a Minari dataset directory (no metadata.json)")
        return _reading(source, lambda: minari.MinariDataset(data))


def _reading(source: str, load):
    """``load()``, with a missing storage reader (ImportError) as one line naming what to install."""
    try:
        return load()
    except ImportError as e:
        missing = getattr(e, "name", None) or "pyarrow"
        raise StoreError(
            f"{source}: reading this Minari dataset needs {missing}, which is not installed; install it with: "
            "pip install 'minari[arrow]' (Arrow/Parquet datasets), then rerun"
        ) from None


def import_minari(config: ImportConfig, mapping: MinariImportConfig | None = None) -> dict:
    """Build a store from a Minari dataset (a rise export is restored exactly; others are mapped as
    ``mapping`` says, default :class:`MinariImportConfig`)."""
    from rise_data.store.lock import store_lock

    mapping = mapping or MinariImportConfig()
    t0 = time.perf_counter()
    ds = open_minari(config.source)
    with store_lock(config.store, "import"):
        return _import(ds, config, mapping, t0)


def _import(ds, config: ImportConfig, mapping: MinariImportConfig, t0: float) -> dict:
    raw = json.loads((Path(ds.storage.data_path) / "metadata.json").read_text())
    recorded = {**config_to_json(config), **config_to_json(mapping)}  # the import's history entry
    if isinstance(raw.get("rise"), dict):
        store = _import_rise_export(ds, raw["rise"], config, recorded)
    else:
        store = _import_foreign(ds, raw, config, mapping, recorded)
    return {
        "store": store.path,
        "rows": store.rows,
        "episodes": store.num_episodes,
        "seconds": time.perf_counter() - t0,
    }


def _import_rise_export(ds, meta: dict, config: ImportConfig, recorded: dict):
    embeddings = dict(meta.get("embeddings") or {})
    space = ds.observation_space
    frame_shape = tuple(space["frame"].shape) if "frame" in space.spaces else None
    builder = StoreBuilder.from_export(config.store, meta, frame_shape, embeddings)
    with _quiet():
        episode_meta = list(ds.storage.get_episode_metadata(range(ds.total_episodes)))
    per_row = _minari_row_bytes(space)
    batch, emb, size = [], {n: [] for n in embeddings}, 0
    for i, e in enumerate(_episodes(ds, config)):
        obs = e.observations
        m = episode_meta[i]
        batch.append(
            _episode(
                obs["obs"], obs.get("frame"), e, int(m.get("rise_env_index", 0)), m.get("rise_terminated")
            )
        )
        for n in embeddings:
            emb[n].append(obs["embeddings"][n])
        size += (len(e.rewards) + 1) * per_row
        if size >= config.batch_bytes:
            builder.add(batch, {n: np.concatenate(v) for n, v in emb.items()})
            batch, emb, size = [], {n: [] for n in embeddings}, 0
    builder.add(batch, {n: np.concatenate(v) for n, v in emb.items()} if batch else {})
    store = builder.finish("import", recorded, format="minari", dataset_id=ds.id)
    mismatched = _compare_checksums((meta.get("checksums") or {}).get("arrays", {}), store.checksums)
    if mismatched:
        raise CorruptStoreError(
            f"{config.source}: imported {', '.join(mismatched)} differ from the checksums the export recorded "
            "(the dataset was changed or damaged); re-export or re-download it"
        )
    return store


def _episodes(ds, config: ImportConfig):
    """The dataset's episodes, with a progress bar unless quiet."""
    return tqdm(ds.iterate_episodes(), total=ds.total_episodes, unit="episode", disable=not config.progress)


def _episode(obs, frame, e, env_index: int, terminated: bool | None = None) -> Episode:
    terminations = np.asarray(e.terminations, bool)
    if terminated is None:  # a 0-step episode has no flags: rise exports record the outcome per episode
        terminated = bool(terminations[-1]) if len(terminations) else False
    terminated = bool(terminated)
    return Episode(
        obs=np.asarray(obs, np.uint8),
        frame=None if frame is None else np.asarray(frame, np.uint8),
        action=np.asarray(e.actions).astype(np.int64),
        reward=np.asarray(e.rewards).astype(np.float32),
        terminated=terminated,
        truncated=not terminated,  # an episode that ends neither way was cut: truncated
        env_index=env_index,
    )


def _minari_row_bytes(space) -> int:
    import gymnasium as gym

    if isinstance(space, gym.spaces.Dict):
        return sum(_minari_row_bytes(s) for s in space.spaces.values())
    return int(np.prod(space.shape or (1,))) * np.dtype(space.dtype or np.uint8).itemsize


def _is_image(space) -> bool:
    """A uint8 Box of (H, W) or (H, W, 1|3) images."""
    import gymnasium as gym

    return (
        isinstance(space, gym.spaces.Box)
        and space.dtype == np.uint8
        and (len(space.shape) == 2 or (len(space.shape) == 3 and space.shape[-1] in (1, 3)))
    )


def _image_key(space, key: str | None, source: str) -> str | None:
    """Which observation holds the images: the space itself (None) or a Dict key (``key``, else the first)."""
    import gymnasium as gym

    if not isinstance(space, gym.spaces.Dict):
        if key is not None:
            raise StoreError(f"{source}: observations are {space}, not a Dict; leave out --obs-key {key}")
        if not _is_image(space):
            raise StoreError(
                f"{source}: observations are {space}, not uint8 images (H, W) or (H, W, 3); rise stores hold images"
            )
        return None
    images = [k for k, s in space.spaces.items() if _is_image(s)]
    if key is None:
        if not images:
            raise StoreError(f"{source}: no uint8 image observation in {space}; rise stores hold images")
        return images[0]
    if key not in space.spaces:
        raise StoreError(
            f"{source}: observations have no key '{key}'; the keys are {', '.join(space.spaces)} "
            f"(images: {', '.join(images) or 'none'}): pass one with --obs-key"
        )
    if not _is_image(space[key]):
        raise StoreError(
            f"{source}: observation '{key}' is {space[key]}, not uint8 images; the image keys are "
            f"{', '.join(images) or 'none'}"
        )
    return key


def _foreign_env(ds, raw: dict, key: str | None, extra_keys: list[str], frame_shape, size: int) -> dict:
    """The env spec of a store imported from a foreign Minari dataset (family ``minari``: data only)."""
    from rise_data.envs import OBS_TRANSFORM

    n_actions = int(ds.action_space.n)
    env_id = ds.env_spec.id if ds.env_spec is not None else f"minari:{ds.id}"
    env = {
        "id": env_id,
        "kind": "minari",
        "kwargs": dict(ds.env_spec.kwargs) if ds.env_spec is not None else {},
        "screen_size": size,
        "obs_transform": OBS_TRANSFORM,
        "obs_shape": [size, size],
        "frame_shape": list(frame_shape) if frame_shape else None,
        "n_actions": n_actions,
        "action_space": {"type": "Discrete", "n": n_actions},
        "observation_space": {
            "obs": {"shape": [size, size], "dtype": "uint8", "low": 0, "high": 255},
            "frame": None if frame_shape is None else {"shape": list(frame_shape), "dtype": "uint8"},
        },
        "source": {
            "minari_dataset": ds.id,
            "observation_key": key,
            "dropped_keys": extra_keys,
            "minari_version": raw.get("minari_version"),
            # the whole gymnasium spec: entry point, kwargs, max_episode_steps, wrappers (to_json is JSON text)
            "env_spec": None if ds.env_spec is None else json.loads(ds.env_spec.to_json()),
        },
    }
    return env


def _import_foreign(ds, raw: dict, config: ImportConfig, mapping: MinariImportConfig, recorded: dict):
    import gymnasium as gym

    from rise_data.envs import to_agent_obs

    if not isinstance(ds.action_space, gym.spaces.Discrete):
        raise StoreError(f"actions are {ds.action_space}; rise stores hold Discrete actions")
    key = _image_key(ds.observation_space, mapping.obs_key, config.source)
    extra_keys = sorted(set(ds.observation_space.spaces) - {key}) if key is not None else []
    # naming the image key says which observation the store keeps; the others are left out (and recorded)
    if extra_keys and mapping.obs_key is None and not mapping.drop_keys:
        images = [k for k, s in ds.observation_space.spaces.items() if _is_image(s)]
        raise StoreError(
            f"{config.source}: observations hold {', '.join(extra_keys)} besides the images '{key}'; a rise "
            f"store keeps one image key: pass --obs-key {key} (image keys: {', '.join(images)}), or "
            "--drop-keys, to import without the rest"
        )
    space = ds.observation_space[key] if key is not None else ds.observation_space
    rgb = len(space.shape) == 3 and space.shape[-1] == 3
    size = mapping.screen_size
    frame_shape = tuple(space.shape) if rgb else None
    env = _foreign_env(ds, raw, key, extra_keys, frame_shape, size)
    builder = StoreBuilder(config.store, env, frame_shape, StoreLayout(), {}, {"history": []})
    per_row = int(np.prod(space.shape)) + size * size
    batch, rows = [], 0
    for e in _episodes(ds, config):
        images = e.observations[key] if key is not None else e.observations
        images = np.asarray(images, np.uint8)
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        obs = to_agent_obs(images, size)
        batch.append(_episode(obs, images if rgb else None, e, 0))
        rows += len(obs)
        if rows * per_row >= config.batch_bytes:
            builder.add(batch)
            batch, rows = [], 0
    builder.add(batch)
    source = {
        k: raw.get(k) for k in ("dataset_id", "author", "description", "algorithm_name", "minari_version")
    }
    source["author"] = (
        list(source["author"]) if isinstance(source["author"], (list, set)) else source["author"]
    )
    return builder.finish("import", recorded, format="minari", minari=source)
