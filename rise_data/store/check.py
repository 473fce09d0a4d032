"""``rise-data check``: validate a store the way gymnasium's ``check_env`` validates an env.

Each check asserts one contract of docs/store-format.md and reports a problem that names what broke.
Errors make the store unusable; warnings (an interrupted write's leftovers, embeddings not finished)
leave the committed data valid, so a store killed at any moment still passes.

By default every chunk of every array's committed rows is decoded, streaming about 16 MB at a time
(bounded memory, a progress bar); arrays the store's seal covers have their sha256 verified in the
same pass, and embeddings are checked finite. ``fast`` checks the structure only: metadata, the
episode index and the per-step scalars, without decoding images or embeddings.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from rise_data.encode.spec import EncoderError, embedding_encoder
from rise_data.store import CorruptStoreError, Store, StoreError, open_store
from rise_data.store.checksums import RowHasher, block_rows, data_fingerprint
from rise_data.store.format import ATTR, EPISODE_ARRAYS, STEP_SCALARS
from rise_data.store.write import partial_files

# besides `encoder` (an EncoderSpec record, parsed strictly), what readers of an embeddings array rely on
EMBEDDING_KEYS = ("dtype", "rows_done")


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" or "warning"
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


def check_store(path: str, fast: bool = False, progress: bool = False) -> list[Problem]:
    """All problems found in the store at ``path`` (empty list: valid); ``fast``: structure only."""
    try:
        store = open_store(path)
    except StoreError as e:
        return [Problem("error", str(path), str(e))]
    problems: list[Problem] = []
    checks = [_check_arrays, _check_episodes, _check_embeddings, _check_integrity]
    for fn in checks if fast else [*checks, _check_chunks]:
        try:
            problems += fn(store, progress)
        except StoreError as e:  # a damaged chunk or metadata file: report, keep checking the rest
            problems.append(Problem("error", fn.__name__.removeprefix("_check_"), str(e)))
    for p in partial_files(store.path):
        problems.append(
            Problem(
                "warning",
                str(p),
                "temporary file left by an interrupted write (harmless; removed on next append)",
            )
        )
    return problems


def report(path: str, problems: list[Problem], fast: bool) -> dict:
    """The machine-readable result of a check (``rise-data check --json``)."""
    errors = sum(p.severity == "error" for p in problems)
    sealed = False
    with contextlib.suppress(StoreError):
        sealed = bool(open_store(path).checksums)
    return {
        "store": str(path),
        "valid": errors == 0,
        "mode": "fast" if fast else "full",
        "sealed": sealed,
        "errors": errors,
        "warnings": len(problems) - errors,
        "problems": [asdict(p) for p in problems],
    }


def _check_arrays(store: Store, _progress: bool) -> list[Problem]:
    out: list[Problem] = []
    env = store.env
    expected = {name: (dtype, ()) for name, dtype in STEP_SCALARS.items()}
    expected["obs"] = ("uint8", tuple(env["obs_shape"]))
    if store.has_frames:
        expected["frame"] = ("uint8", tuple(env["frame_shape"]))
    for name, (dtype, row_shape) in expected.items():
        try:
            arr = store.array(name)
        except CorruptStoreError:
            raise
        except StoreError:
            out.append(Problem("error", name, "array missing"))
            continue
        if str(arr.dtype) != dtype:
            out.append(Problem("error", name, f"dtype {arr.dtype}, expected {dtype}"))
        if tuple(arr.shape[1:]) != row_shape:
            out.append(Problem("error", name, f"row shape {tuple(arr.shape[1:])}, expected {row_shape}"))
        if arr.shape[0] < store.rows:
            out.append(Problem("error", name, f"{arr.shape[0]} rows but {store.rows} are committed"))
        elif arr.shape[0] > store.rows:
            out.append(
                Problem(
                    "warning",
                    name,
                    f"{arr.shape[0] - store.rows} uncommitted rows after an interrupted write (ignored; trimmed on next append)",
                )
            )
    return out


def _check_episodes(store: Store, _progress: bool) -> list[Problem]:
    """The episode index tiles the committed rows, and every row agrees with it."""
    ep = store.episodes()
    problems = _check_index(store, ep)
    if problems or store.num_episodes == 0:
        return problems
    return _check_rows(store, ep)


def _check_index(store: Store, ep: dict) -> list[Problem]:
    """Episodes are contiguous, start at row 0 and end at the last committed row."""
    n = store.rows
    for name in EPISODE_ARRAYS:
        if len(ep[name]) != store.num_episodes:
            msg = f"{len(ep[name])} entries, {store.num_episodes} committed"
            return [Problem("error", f"episodes/{name}", msg)]
    start, length = ep["start"], ep["length"]
    if store.num_episodes == 0:
        return [] if n == 0 else [Problem("error", "episodes", f"{n} rows but no episodes")]
    expect_start = np.concatenate([[0], np.cumsum(length + 1)[:-1]])
    wrong = (start != expect_start) | (length < 0)
    if wrong.any():
        bad = int(np.argmax(wrong))
        msg = f"episode {bad} starts at {start[bad]}, expected {expect_start[bad]} (episodes must be contiguous)"
        return [Problem("error", "episodes/start", msg)]
    covered = int(start[-1] + length[-1] + 1)
    if covered != n:
        return [Problem("error", "episodes/length", f"episodes cover {covered} rows, {n} committed")]
    return []


def _first_mismatch(a: np.ndarray, b: np.ndarray) -> int | None:
    return None if np.array_equal(a, b) else int(np.argmax(a != b))


ROW_BLOCK = 1 << 16  # rows of the per-step scalars checked at once (whole episodes): bounded memory


def _episode_blocks(length: np.ndarray, rows: int = ROW_BLOCK) -> list[tuple[int, int]]:
    """``[e0, e1)`` runs of whole episodes spanning about ``rows`` rows each (at least one episode)."""
    ends = np.cumsum(length + 1)
    out, e0 = [], 0
    while e0 < len(length):
        base = ends[e0 - 1] if e0 else 0
        e1 = max(e0 + 1, int(np.searchsorted(ends, base + rows, side="right")))
        out.append((e0, e1))
        e0 = e1
    return out


def _check_rows(store: Store, ep: dict) -> list[Problem]:
    """Flags, ids, padding, actions and returns of every row agree with the episode index.

    Streams whole episodes about :data:`ROW_BLOCK` rows at a time; each kind of problem is reported
    once, at its first row.
    """
    found: dict[str, Problem] = {}
    for e0, e1 in _episode_blocks(ep["length"]):
        for p in _check_row_block(store, ep, e0, e1):
            found.setdefault(p.where, p)
    return list(found.values())


def _check_row_block(store: Store, ep: dict, e0: int, e1: int) -> list[Problem]:
    """:func:`_check_rows` on episodes ``[e0, e1)``; rows and episodes in messages are the store's."""
    out: list[Problem] = []
    r0 = int(ep["start"][e0])
    length = ep["length"][e0:e1]
    start = ep["start"][e0:e1] - r0
    n = int(start[-1] + length[-1] + 1)
    cols = {k: store.read(k, r0, r0 + n) for k in STEP_SCALARS}
    last = start + length
    first_mask, last_mask = np.zeros(n, bool), np.zeros(n, bool)
    first_mask[start], last_mask[last] = True, True
    for flag, mask in (("is_first", first_mask), ("is_last", last_mask)):
        row = _first_mismatch(cols[flag], mask)
        if row is not None:
            out.append(Problem("error", flag, f"disagrees with the episode index at row {r0 + row}"))
    for flag in ("terminated", "truncated"):
        stray = cols[flag] & ~last_mask
        if stray.any():
            msg = f"set on row {r0 + int(np.argmax(stray))}, which is not an episode's last row"
            out.append(Problem("error", flag, msg))
    ends = cols["terminated"][last].astype(int) + cols["truncated"][last].astype(int)
    if np.any(ends != 1):
        msg = f"episode {e0 + int(np.argmax(ends != 1))} must end terminated xor truncated"
        out.append(Problem("error", "terminated/truncated", msg))
    if not np.array_equal(cols["episode_id"], np.repeat(np.arange(e0, e1), length + 1)):
        out.append(Problem("error", "episode_id", "does not number the rows of each episode"))
    if np.any(cols["action"][last] != 0) or np.any(cols["reward"][last] != 0):
        out.append(Problem("error", "action/reward", "the last row of an episode must hold padding zeros"))
    n_actions = int(store.env["n_actions"])
    if np.any((cols["action"] < 0) | (cols["action"] >= n_actions)):
        out.append(Problem("error", "action", f"values outside [0, {n_actions})"))
    if not np.all(np.isfinite(cols["reward"])):
        out.append(Problem("error", "reward", "non-finite values"))
    sums = np.add.reduceat(cols["reward"].astype(np.float64), start)
    off = ~np.isclose(sums, ep["return"][e0:e1], rtol=1e-6, atol=1e-3)
    if off.any():
        bad = int(np.argmax(off))
        msg = f"episode {e0 + bad} return {ep['return'][e0 + bad]} != reward sum {sums[bad]}"
        out.append(Problem("error", "episodes/return", msg))
    return out


def _check_embeddings(store: Store, _progress: bool) -> list[Problem]:
    out: list[Problem] = []
    for name in store.embedding_names():
        where = f"embeddings/{name}"
        arr = store.array(where)
        meta = dict(arr.attrs).get(ATTR)
        if not isinstance(meta, dict):
            out.append(Problem("error", where, "no provenance attribute"))
            continue
        try:
            spec = embedding_encoder(store, name)
        except EncoderError as e:
            out.append(Problem("error", where, str(e)))
            continue
        missing = [k for k in EMBEDDING_KEYS if k not in meta]
        if missing:
            out.append(Problem("error", where, f"provenance lacks {', '.join(missing)}"))
            continue
        if arr.ndim != 2 or arr.shape[1] != spec.dim or str(arr.dtype) != meta["dtype"]:
            out.append(
                Problem(
                    "error",
                    where,
                    f"shape {arr.shape} {arr.dtype} disagrees with provenance dim={spec.dim} dtype={meta['dtype']}",
                )
            )
        if arr.shape[0] < store.rows:
            out.append(Problem("error", where, f"{arr.shape[0]} rows, {store.rows} committed"))
        done = int(meta["rows_done"])
        if done < store.rows:
            out.append(
                Problem(
                    "warning",
                    where,
                    f"incomplete: {done} of {store.rows} rows encoded; finish with: rise-data encode {store.path} --encoder {spec.name} --name {name}",
                )
            )
    return out


def _check_integrity(store: Store, _progress: bool) -> list[Problem]:
    """Card identity and statistics still describe the data (their recorded row counts)."""
    out: list[Problem] = []
    meta = store.meta
    card = meta.get("card") or {}
    content = card.get("content") or {}
    if (
        card.get("id")
        and content
        and (content.get("rows"), content.get("episodes")) != (store.rows, store.num_episodes)
    ):
        out.append(
            Problem(
                "warning",
                "card",
                f"the data changed since '{card['id']}' was assigned ({content.get('rows')} -> {store.rows} rows); "
                f"give it a new version: rise-data card {store.path} --id {card['id'].rsplit('-v', 1)[0]}-v{int(card.get('version', 0)) + 1}",
            )
        )
    stats = meta.get("stats")
    if stats and stats.get("rows") != store.rows:
        out.append(
            Problem(
                "warning",
                "stats",
                f"statistics cover {stats.get('rows')} of {store.rows} rows; recompute: rise-data stats {store.path}",
            )
        )
    return out


# -- the streaming pass: every chunk decoded, sealed arrays hashed, embeddings finite --------------
def _checksum_plan(store: Store) -> tuple[list[Problem], dict[str, int]]:
    """Which arrays' recorded sha256 can be verified, over how many rows; problems with the seal itself.

    Checksums cover a prefix of rows (``rows`` in each entry): appends leave them valid for that prefix,
    so a store collected further since sealing verifies what was sealed and is told to reseal the rest.
    """
    out: list[Problem] = []
    plan: dict[str, int] = {}
    recorded = store.checksums
    if not recorded:
        return out, plan  # never sealed: nothing to verify (rise-data seal records checksums)
    names = store.checksum_names()
    reseal = f"reseal: rise-data seal {store.path}"
    for name in names:
        rec = recorded.get(name)
        if rec is None:
            out.append(Problem("warning", name, f"no checksum (added after sealing); {reseal}"))
        elif rec.get("created") != store.checksum_tag(name):
            out.append(Problem("warning", name, f"re-encoded after sealing; {reseal}"))
        elif int(rec["rows"]) > store.checksum_rows(name):
            out.append(
                Problem(
                    "error",
                    name,
                    f"checksum covers {rec['rows']} rows but only {store.checksum_rows(name)} are committed",
                )
            )
        else:
            plan[name] = int(rec["rows"])
            if plan[name] < store.checksum_rows(name):
                out.append(
                    Problem(
                        "warning",
                        name,
                        f"checksum covers {plan[name]} of {store.checksum_rows(name)} rows (data added after "
                        f"sealing); {reseal}",
                    )
                )
    for name in sorted(set(recorded) - set(names)):
        if not name.startswith("embeddings/"):  # a deleted embeddings array is not damage
            out.append(Problem("error", name, "has a recorded checksum but the array is missing"))
    return out, plan


def _decode_rows(store: Store, name: str) -> int:
    """Rows of ``name`` whose chunks the full check decodes: every committed row (episodes: entries)."""
    return store.num_episodes if name.startswith("episodes/") else store.rows


def _check_chunks(store: Store, progress: bool) -> list[Problem]:
    """Decode every chunk of every array (~16 MB per read), verifying recorded sha256 in the same pass."""
    out, plan = _checksum_plan(store)
    names = store.checksum_names()
    sizes = {n: _decode_rows(store, n) * _row_bytes(store, n) for n in names}
    verified: dict[str, dict] = {}
    with tqdm(
        total=sum(sizes.values()), unit="B", unit_scale=True, desc="check", disable=not progress
    ) as bar:
        for name in names:
            problem, digest = _stream_array(store, name, plan.get(name), bar)
            if problem is not None:
                out.append(problem)
            elif digest is not None and digest != store.checksums[name]["sha256"]:
                n = plan[name]
                out.append(
                    Problem(
                        "error",
                        name,
                        f"sha256 of rows [0, {n}) does not match the recorded one: the data changed after "
                        f"sealing or is corrupt; restore the store from its pack or a copy",
                    )
                )
            elif digest is not None:
                verified[name] = store.checksums[name]
    return out + _check_card_fingerprint(store, verified)


def _row_bytes(store: Store, name: str) -> int:
    arr = store.array(name)
    return int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize


def _stream_array(
    store: Store, name: str, hash_rows: int | None, bar: tqdm
) -> tuple[Problem | None, str | None]:
    """Read ``name``'s committed rows block by block: (the first problem, sha256 of rows [0, hash_rows))."""
    arr = store.array(name)
    bound, step = _decode_rows(store, name), block_rows(arr)
    finite = name.startswith("embeddings/") and np.issubdtype(arr.dtype, np.floating)
    done = min(store.checksum_rows(name), bound) if finite else 0
    hasher = RowHasher()
    hasher.update(name, arr[0:0])
    for s in range(0, bound, step):
        try:
            block = np.asarray(arr[s : min(s + step, bound)])
        except CorruptStoreError as e:
            return Problem("error", name, str(e)), None
        if hash_rows is not None and s < hash_rows:
            hasher.update(name, block[: hash_rows - s])
        if s < done and not np.all(np.isfinite(block[: done - s])):
            bad = ~np.isfinite(block[: done - s]).reshape(len(block[: done - s]), -1).all(axis=1)
            return Problem("error", name, f"non-finite values at row {s + int(np.argmax(bad))}"), None
        bar.update(len(block) * _row_bytes(store, name))
    return None, (hasher.digests()[name]["sha256"] if hash_rows is not None else None)


def _check_card_fingerprint(store: Store, verified: dict[str, dict]) -> list[Problem]:
    """A card's id names the data it was given to: refuse a store whose verified data is other data."""
    card = store.meta.get("card") or {}
    content = card.get("content") or {}
    data = [n for n in store.checksum_names() if not n.startswith("embeddings/")]
    covered = bool(content.get("data_sha256")) and all(
        n in verified
        and verified[n]["rows"] == (content["episodes"] if n.startswith("episodes/") else content["rows"])
        for n in data
    )
    if covered and data_fingerprint({n: verified[n] for n in data}) != content["data_sha256"]:
        return [
            Problem("error", "card", f"'{card.get('id')}' was assigned to other data than the store holds")
        ]
    return []
