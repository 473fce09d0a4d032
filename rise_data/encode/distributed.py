"""Scale-out encode on PyTorch's own launcher: ``torchrun ... -m rise_data.cli encode STORE --encoder X``.

torchrun starts one process per rank and sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; ``World`` joins them
(gloo on CPU, NCCL on GPU) and carries the few control messages an encode needs (the plan from rank 0,
every rank's status). The data never goes through the process group: each rank reads its rows from the
store and writes whole embedding chunks straight to it.

The work is split by pure functions (tested against naive loops): what is done (``rows_done``, the
single-process committed prefix, plus the ranges finished by earlier multi-rank jobs) -> what is left,
aligned to whole output chunks -> one list of ranges per rank. So no two ranks write one chunk, and a
killed job resumes with any world size. Progress of a range lives in a small JSON file per range under
``embeddings/<name>/encode-ranges/`` (``RangeMarkers``), written only by the rank that owns the range, next
to ``job.json`` (the running job's id, written by rank 0): a rank whose job was replaced stops instead of
marking progress. Rank 0 sets ``rows_done`` to the row count and removes the folder only when every range
is done.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rise_data.store import StoreError
from rise_data.store.format import store_kind
from rise_data.store.open import storage_options_for

Interval = tuple[int, int]
MARKER_DIR = "encode-ranges"


# --------------------------------------------------------------------------- planning (pure)


def merge_intervals(intervals: Sequence[Interval]) -> list[Interval]:
    """Sorted union of half-open ``[a, b)`` intervals (touching ones joined, empty ones dropped)."""
    out: list[list[int]] = []
    for a, b in sorted((int(a), int(b)) for a, b in intervals if b > a):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def todo_intervals(done: Sequence[Interval], total: int, unit: int) -> list[Interval]:
    """Rows of ``[0, total)`` not in ``done``, widened to whole ``unit``-row blocks (capped at ``total``).

    Widening re-encodes a few done rows next to a gap; that is harmless (same values) and keeps every
    interval made of whole output chunks, the unit no two ranks may share.
    """
    gaps, at = [], 0
    for a, b in merge_intervals([(a, min(b, total)) for a, b in done]):
        if a > at:
            gaps.append((at, a))
        at = max(at, b)
    if at < total:
        gaps.append((at, total))
    return merge_intervals([(a // unit * unit, min(-(-b // unit) * unit, total)) for a, b in gaps])


def split_ranges(todo: Sequence[Interval], parts: int, unit: int) -> list[list[Interval]]:
    """Split unit-aligned intervals into ``parts`` lists of ranges with (nearly) equal block counts.

    Blocks of ``unit`` rows (the last one of an interval may be shorter) are numbered across ``todo`` in
    order; part ``p`` takes blocks ``[p*U // parts, (p+1)*U // parts)``, cut back into row ranges.
    """
    blocks = [(a, -(-(b - a) // unit)) for a, b in todo]  # (start row, number of blocks)
    total_blocks = sum(n for _, n in blocks)
    out: list[list[Interval]] = []
    for p in range(parts):
        lo, hi = p * total_blocks // parts, (p + 1) * total_blocks // parts
        ranges, first = [], 0
        for (a, n), (_, b) in zip(blocks, todo, strict=True):
            s, e = max(lo, first), min(hi, first + n)
            if s < e:
                ranges.append((a + (s - first) * unit, min(a + (e - first) * unit, b)))
            first += n
        out.append(ranges)
    return out


def work_unit(out_chunk: int, block: int) -> int:
    """Rows per indivisible piece of work: whole output chunks *and* whole read blocks.

    Blocks start at multiples of ``block`` whatever the split, so every rank feeds the model exactly the
    batches a single process would (CPU results can depend on batch composition): bit-identical output.
    """
    return math.lcm(out_chunk, block)


# --------------------------------------------------------------------------- the ranks


@dataclass
class World:
    """This process's place in a torchrun job (size 1 without torchrun) and its device."""

    rank: int
    size: int
    local_rank: int
    device: torch.device
    joined: bool = False  # a process group was initialised here (and is destroyed by close)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out

    def agree(self, fn: Callable[[], Any], what: str) -> Any:
        """Run ``fn`` on every rank; if it failed on any, raise on all (one line naming the rank).

        Without this, a rank that fails while the others wait in a collective would leave them hanging.
        """
        try:
            result, error = fn(), None
        except Exception as e:  # re-raised below, on every rank
            result, error = None, e
        errors = self.gather(None if error is None else str(error))
        if error is not None:
            raise error
        bad = [(r, msg) for r, msg in enumerate(errors) if msg is not None]
        if bad:
            raise StoreError(f"{what} failed on rank {bad[0][0]} of {self.size}: {bad[0][1]}")
        return result

    def close(self) -> None:
        if self.joined and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def world_from_env(device: str, resolve: Callable[[str], torch.device]) -> World:
    """The torchrun world from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (one process without them).

    Each rank gets its own device: ``cuda:LOCAL_RANK`` when ``device`` is ``auto``/``cuda`` and CUDA is
    there, else ``resolve(device)``; the process group is NCCL on CUDA, gloo on CPU.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(0, 1, 0, resolve(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    joined = not torch.distributed.is_initialized()
    if joined:
        torch.distributed.init_process_group(
            "nccl" if dev.type == "cuda" else "gloo", timeout=_dt.timedelta(hours=2)
        )
    return World(rank, size, local, dev, joined)


# --------------------------------------------------------------------------- progress markers


class RangeMarkers:
    """Per-range progress files of one embeddings array, on a local disk or an object store (fsspec).

    ``<array>/encode-ranges/<start>-<stop>.json`` = ``{"start", "stop", "done", "job", "rank", "pid"}``:
    rows ``[start, done)`` of that range are written. One writer per file (the range's rank), each write
    a whole-object replace, so no two processes ever read-modify-write one object.
    """

    def __init__(self, store_path: str, name: str) -> None:
        import fsspec

        self.url = store_path
        self.remote = store_kind(store_path) == "url"
        opts = storage_options_for(store_path) if self.remote else {}
        self.fs, root = fsspec.core.url_to_fs(store_path, **opts)
        self.dir = f"{root.rstrip('/')}/embeddings/{name}/{MARKER_DIR}"

    def _put(self, key: str, obj: dict) -> None:
        data = json.dumps(obj).encode()
        path = f"{self.dir}/{key}"
        if self.remote:
            self.fs.pipe_file(path, data)  # an object PUT is atomic
            return
        Path(self.dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{path}.{os.getpid()}.partial")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # never a half-written marker

    def _get(self, key: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(f"{self.dir}/{key}"))
        except FileNotFoundError:
            return None

    def write_job(self, job: dict) -> None:
        self._put("job.json", job)

    def job(self) -> dict | None:
        return self._get("job.json")

    def write(self, rng: Interval, done: int, job: str, rank: int) -> None:
        a, b = rng
        self._put(
            f"{a}-{b}.json",
            {"start": a, "stop": b, "done": done, "job": job, "rank": rank, "pid": os.getpid()},
        )

    def ranges(self) -> list[dict]:
        """Every range marker (any job), parsed; a damaged one is skipped (its rows are redone)."""
        if self.remote:
            self.fs.invalidate_cache(self.dir)  # s3fs caches listings; markers change under it
        try:
            names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(self.dir, detail=False)]
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            if n.endswith(".json") and n != "job.json":
                try:
                    m = self._get(n)
                    out.append({k: int(m[k]) for k in ("start", "stop", "done")})
                except (ValueError, KeyError, TypeError):
                    continue
        return out

    def done_intervals(self) -> list[Interval]:
        return [(m["start"], min(m["done"], m["stop"])) for m in self.ranges()]

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.dir, recursive=True)


def new_job(world: World, config_json: dict) -> dict:
    """The id every rank checks before marking progress (a rank of a replaced job stops)."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return {"id": uuid.uuid4().hex, "world_size": world.size, "started": now, "config": config_json}
