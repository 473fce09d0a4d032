"""Encoding: run a frozen encoder over a store's frames once and store the embeddings with provenance.

The pipeline keeps the device busy: background threads read and decompress chunk-aligned blocks
(pinned host memory on CUDA), the main thread copies each block to the device without blocking and runs
the encoder (bf16 autocast + channels_last on CUDA, optionally torch.compile), and a writer thread
copies results back and writes whole embedding chunks. At most ``prefetch`` blocks are in flight, so
memory stays bounded whatever the store's size. ``rows_done`` (a committed prefix, in the embedding
array's attributes) advances only after its rows are on disk, so a rerun resumes where a kill stopped.
The array's attributes hold ``encoder`` (``EncoderSpec.to_json()``: exactly what rebuilds the encoder),
``dtype``, ``versions``, ``config``, ``created`` and ``rows_done``.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from rise_data.encode.config import EncodeConfig
from rise_data.encode.distributed import (
    RangeMarkers,
    World,
    new_job,
    split_ranges,
    todo_intervals,
    work_unit,
    world_from_env,
)
from rise_data.encode.encoders import Encoder, embedding_encoder, library_versions, make_encoder
from rise_data.encode.spec import EncoderError
from rise_data.store import Store, StoreError, StoreLayout, WritableStore, open_store
from rise_data.store.format import ATTR, config_to_json, now_iso, store_kind
from rise_data.store.lock import store_lock
from rise_data.store.open import storage_options_for
from rise_data.store.write import write_rows


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def embedding_name(config: EncodeConfig) -> str:
    name = config.name or config.encoder.replace(":", ".")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise EncoderError(
            f"embedding name '{name}' may hold only letters, digits, '_', '.', '-'; pass --name"
        )
    return name


def embedding_record(config: EncodeConfig, encoder: Encoder) -> dict:
    """The embeddings array's attributes: the encoder's spec (what rebuilds it), dtype, versions, config."""
    return {
        "encoder": encoder.spec.to_json(),
        "dtype": config.dtype,
        "versions": library_versions(),
        "config": config_to_json(config),
        "created": now_iso(),
    }


def prepare(config: EncodeConfig, store: Store, encoder: Encoder) -> tuple[str, int]:
    """Create, reuse or refuse the embeddings array; returns (name, first row to encode).

    An existing array is continued only if it was made by the same encoder (spec, weights location aside)
    with the same dtype.
    """
    name = embedding_name(config)
    if name in store.embedding_names():
        if config.overwrite:
            store.delete_embedding(name)
        else:
            old = embedding_encoder(store, name)
            old_dtype = store.embedding_meta(name).get("dtype")
            diff = old.differences(encoder.spec) + (["dtype"] if old_dtype != config.dtype else [])
            if diff:
                raise StoreError(
                    f"embeddings '{name}' in {store.path} were made with a different {', '.join(diff)}; "
                    f"pass --overwrite to redo them or --name to keep both"
                )
            return name, int(store.embedding_meta(name)["rows_done"])
    layout = StoreLayout(**store.meta.get("layout", {}))
    store.create_embedding(name, encoder.dim, config.dtype, embedding_record(config, encoder), layout)
    return name, 0


def encode(config: EncodeConfig) -> dict:
    """Encode every row not yet done (resumable); returns a summary with rows/s.

    Under ``torchrun`` every rank runs this: rank 0 takes the store's locks and plans, each rank encodes
    its share of whole output chunks on its own device, and the array is complete when all ranges are
    (see ``rise_data.encode.distributed``). Without torchrun it is one process doing all of it.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    world = world_from_env(config.device, resolve_device)
    try:
        return _encode_job(config, world)
    finally:
        world.close()


def _encode_job(config: EncodeConfig, world: World) -> dict:
    store, encoder, source = world.agree(lambda: _open_and_build(config, world.device), "opening the store")
    with contextlib.ExitStack() as locks:  # held by rank 0 for the whole job
        plan = world.agree(
            lambda: _plan(config, store, encoder, source, world, locks) if world.rank == 0 else None,
            "planning",
        )
        plan = world.broadcast(plan)
        t0 = time.perf_counter()
        rows = world.agree(lambda: _encode_share(config, store, encoder, source, plan, world), "encoding")
        seconds = time.perf_counter() - t0
        per_rank = world.gather((rows, seconds))
        complete = world.broadcast(
            world.agree(lambda: _finish(store, plan) if world.rank == 0 else None, "finishing")
        )
    rows = sum(r for r, _ in per_rank)
    seconds = max(t for _, t in per_rank)
    return {
        "name": plan["name"],
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / max(seconds, 1e-9),
        "complete": complete,
        "device": str(world.device),
        "ranks": world.size,
    }


def open_for_encode(path: str) -> Store:
    """The store opened for writing embeddings: a store directory, or an object-store URL (``s3://``).

    Encode writes only its own array's chunks and attributes, so unlike the row writers it can write
    through fsspec; ranks on different machines write disjoint chunk keys.
    """
    if store_kind(path) != "url":
        return open_store(path, mode="a")
    import zarr
    from zarr.storage import FsspecStore

    open_store(path)  # one-line errors for a missing bucket or store
    backend = FsspecStore.from_url(path, read_only=False, storage_options=storage_options_for(path))
    return WritableStore(zarr.open_group(store=backend, mode="r+", zarr_format=3), path)


def _open_and_build(config: EncodeConfig, device: torch.device) -> tuple[Store, Encoder, str]:
    store = open_for_encode(config.store)
    source = config.source or ("frame" if store.has_frames else "obs")
    if not store.has_array(source):  # a damaged zarr.json is named (CorruptStoreError)
        raise StoreError(
            f"{store.path} has no '{source}' array; pass --source obs (the store has no RGB frames)"
        )
    encoder = make_encoder(config.encoder, weights=config.weights, source=source).to(device)
    return store, encoder, source


def _block_rows(src, batch_size: int) -> int:
    """Rows read and encoded together: whole source chunks, about ``batch_size``."""
    return max(src.chunks[0], batch_size // src.chunks[0] * src.chunks[0])


def _plan(
    config: EncodeConfig,
    store: Store,
    encoder: Encoder,
    source: str,
    world: World,
    locks: contextlib.ExitStack,
) -> dict:
    """Rank 0: lock, create/reuse/refuse the array, and split what is left into per-rank ranges."""
    name = embedding_name(config)
    # One encode per embeddings array, and no row writer meanwhile: appends resize this array.
    locks.enter_context(store_lock(store.path, f"encode {name}", name=f"encode-{name}"))
    locks.enter_context(store_lock(store.path, f"encode {name}"))
    fresh = config.overwrite or name not in store.embedding_names()
    _, rows_done = prepare(config, store, encoder)
    markers = RangeMarkers(store.path, name)
    if fresh:
        markers.clear()  # leftovers of an array that no longer exists
    block = _block_rows(store.array(source), config.batch_size)
    unit = work_unit(store.embedding(name).chunks[0], block)
    # One process and no other job's ranges: advance rows_done itself, as a plain encode always did,
    # from the read block holding it (blocks sit at multiples of `block`: the same batches as a fresh run).
    prefix = world.size == 1 and not markers.ranges()
    if prefix:
        todo = [(rows_done // block * block, store.rows)] if rows_done < store.rows else []
    else:
        todo = todo_intervals([(0, rows_done), *markers.done_intervals()], store.rows, unit)
    job = new_job(world, config_to_json(config))
    if todo and not prefix:
        markers.write_job(job)
    ranges = split_ranges(todo, world.size, unit)
    return {"name": name, "job": job["id"], "prefix": prefix, "block": block, "ranges": ranges, "todo": todo}


def _encode_share(
    config: EncodeConfig, store: Store, encoder: Encoder, source: str, plan: dict, world: World
) -> int:
    """This rank's ranges, encoded and written; returns the rows encoded."""
    ranges = [tuple(r) for r in plan["ranges"][world.rank]]
    if not ranges:
        return 0
    name = plan["name"]
    arr = store.embedding(name)
    if plan["prefix"]:

        def mark(_: int, end: int) -> None:
            meta = dict(arr.attrs)[ATTR]
            arr.attrs[ATTR] = {**meta, "rows_done": max(int(meta["rows_done"]), end)}
    else:
        markers = RangeMarkers(store.path, name)

        def mark(r: int, end: int) -> None:
            job = (markers.job() or {}).get("id")
            if job != plan["job"]:
                raise StoreError(
                    f"embeddings '{name}' of {store.path} are now encoded by another job ({job}); "
                    f"this job ({plan['job']}) stops"
                )
            markers.write(ranges[r], end, plan["job"], world.rank)

    desc = f"encode {name}" + (f" (rank 0 of {world.size})" if world.size > 1 else "")
    show = config.progress and world.rank == 0
    return _run_ranges(
        encoder,
        config,
        world.device,
        store.array(source),
        arr,
        ranges,
        plan["block"],
        mark,
        show,
        desc,
    )


def _finish(store: Store, plan: dict) -> bool:
    """Rank 0, after every rank returned: ``rows_done = rows`` once no row is left; markers removed."""
    arr = store.embedding(plan["name"])
    meta = dict(arr.attrs)[ATTR]
    markers = RangeMarkers(store.path, plan["name"])
    if plan["prefix"]:
        complete = int(meta["rows_done"]) >= store.rows
        if complete:
            markers.clear()  # a job.json left by a job killed before its first range
        return complete
    done = [(0, int(meta["rows_done"])), *markers.done_intervals()]
    if todo_intervals(done, store.rows, 1):
        return False
    arr.attrs[ATTR] = {**meta, "rows_done": store.rows}  # the single-process meaning: all rows
    markers.clear()
    return True


def _run_ranges(
    encoder: Encoder,
    config: EncodeConfig,
    device: torch.device,
    src,
    arr,
    ranges: list[tuple[int, int]],
    block: int,
    mark,
    show: bool,
    desc: str,
) -> int:
    """The pipelined read -> encode -> write loop over ``ranges`` (blocks at multiples of ``block``)."""
    run = _model_fn(encoder, device, config)
    cuda = device.type == "cuda"
    out_dtype = getattr(torch, config.dtype)
    blocks = [(s, min(s + block, b), r) for r, (a, b) in enumerate(ranges) for s in range(a, b, block)]

    def read(i: int) -> tuple[int, int, torch.Tensor]:
        s, e, r = blocks[i]
        x = torch.from_numpy(np.ascontiguousarray(src[s:e]))
        return s, r, (x.pin_memory() if cuda else x)

    results: queue.Queue = queue.Queue(maxsize=config.prefetch)
    writer = threading.Thread(target=_write_loop, args=(results, arr, arr.chunks[0], mark), daemon=True)
    writer.start()
    bar = tqdm(total=sum(b - a for a, b in ranges), unit="frame", disable=not show, desc=desc)
    stream = torch.cuda.Stream() if cuda else None
    try:
        with ThreadPoolExecutor(config.read_workers, thread_name_prefix="rise-encode-read") as pool:
            pending = [pool.submit(read, i) for i in range(min(config.prefetch, len(blocks)))]
            nxt = len(pending)
            while pending:
                s, r, x = pending.pop(0).result()
                if nxt < len(blocks):
                    pending.append(pool.submit(read, nxt))
                    nxt += 1
                with torch.no_grad():
                    if cuda:
                        with torch.cuda.stream(stream):
                            y = run(x.to(device, non_blocking=True)).to(out_dtype)
                            host = torch.empty(y.shape, dtype=out_dtype, pin_memory=True)
                            host.copy_(y, non_blocking=True)
                            event = torch.cuda.Event()
                            event.record(stream)
                    else:
                        host, event = run(x).to(out_dtype), None
                _put(results, writer, (s, r, host, event))
                bar.update(len(x))
    finally:
        _put(results, writer, None)
        writer.join()
        bar.close()
    if getattr(writer, "error", None):
        raise writer.error
    return sum(b - a for a, b in ranges)


def _put(q: queue.Queue, writer: threading.Thread, item) -> None:
    """Queue put that fails fast if the writer died instead of blocking forever."""
    while True:
        if not writer.is_alive():
            raise getattr(writer, "error", None) or RuntimeError("encode writer stopped")
        try:
            q.put(item, timeout=0.5)
            return
        except queue.Full:
            continue


def _model_fn(encoder: Encoder, device: torch.device, config: EncodeConfig):
    """The per-batch device function: uint8 rows -> features, with the CUDA fast paths switched on."""
    if device.type == "cuda" and config.channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    fn = torch.compile(encoder, dynamic=True) if config.compile else encoder
    if device.type == "cuda" and config.amp:

        def run(x):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return fn(x).float()

        return run
    return fn


def _write_loop(results: queue.Queue, arr, out_chunk: int, mark) -> None:
    """Gather results into whole embedding chunks, write them, then ``mark(range, end)`` the progress.

    A range ends on a chunk boundary or at the last row, so its tail is written when the next range
    starts (or at the end); progress is marked only after its rows are on disk.
    """
    me = threading.current_thread()
    buf: list[np.ndarray] = []
    buf_start, cur = 0, None
    try:
        while True:
            item = results.get()
            if buf and (item is None or item[1] != cur):  # the current range is finished: write its tail
                n = sum(len(b) for b in buf)
                write_rows(arr, buf_start, np.concatenate(buf))
                mark(cur, buf_start + n)
                buf = []
            if item is None:
                return
            s, cur, host, event = item
            if event is not None:
                event.synchronize()
            if not buf:
                buf_start = s
            buf.append(host.numpy().copy() if event is not None else host.numpy())
            end = buf_start + sum(len(b) for b in buf)
            cut = end // out_chunk * out_chunk
            if cut > buf_start:  # whole chunks are ready: write them straight to files
                data = np.concatenate(buf)
                write_rows(arr, buf_start, data[: cut - buf_start])
                mark(cur, cut)
                rest = data[cut - buf_start :]
                buf, buf_start = ([rest] if len(rest) else []), cut
    except BaseException as e:  # re-raised by the main thread
        me.error = e
