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

import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from rise_data.encoders import Encoder, embedding_encoder, library_versions, make_encoder
from rise_data.store import (
    ATTR,
    Store,
    StoreError,
    StoreLayout,
    config_to_json,
    now_iso,
    open_store,
    write_rows,
)


@dataclass(frozen=True)
class EncodeConfig:
    """Everything ``rise-data encode`` was asked to do; saved with the embeddings."""

    store: str
    encoder: str = "resnet18"
    weights: str | None = None  # a state-dict file, "untrained", or None for the encoder's default source
    name: str | None = None  # embeddings array name; default: the encoder name
    source: str | None = None  # "frame" or "obs"; default: frame when the store has frames
    batch_size: int = 512
    device: str = "auto"
    dtype: str = "float16"
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True
    compile: bool = False
    read_workers: int = 4
    prefetch: int = 6
    overwrite: bool = False
    progress: bool = True


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def embedding_name(config: EncodeConfig) -> str:
    name = config.name or config.encoder.replace(":", ".")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ValueError(f"embedding name '{name}' may hold only letters, digits, '_', '.', '-'; pass --name")
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
    """Encode every row not yet done; returns a summary with rows/s."""
    store = open_store(config.store, mode="a")
    source = config.source or ("frame" if store.has_frames else "obs")
    if source not in store.group:
        raise StoreError(
            f"{store.path} has no '{source}' array; pass --source obs (the store has no RGB frames)"
        )
    device = resolve_device(config.device)
    encoder = make_encoder(config.encoder, weights=config.weights, source=source).to(device)
    name, start = prepare(config, store, encoder)
    arr = store.embedding(name)
    total = store.rows
    if start >= total:
        return {"name": name, "rows": 0, "seconds": 0.0, "rows_per_s": 0.0, "complete": True}
    run = _model_fn(encoder, device, config)
    src = store.array(source)
    block = max(src.chunks[0], config.batch_size // src.chunks[0] * src.chunks[0])  # whole source chunks
    out_chunk = arr.chunks[0]
    cuda = device.type == "cuda"
    out_dtype = getattr(torch, config.dtype)

    def read(s: int) -> tuple[int, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(src[s : min(s + block, total)]))
        return s, (x.pin_memory() if cuda else x)

    results: queue.Queue = queue.Queue(maxsize=config.prefetch)
    writer = threading.Thread(target=_write_loop, args=(results, store, name, out_chunk, total), daemon=True)
    writer.start()
    bar = tqdm(total=total - start, unit="frame", disable=not config.progress, desc=f"encode {name}")
    t0 = time.perf_counter()
    stream = torch.cuda.Stream() if cuda else None
    try:
        with ThreadPoolExecutor(config.read_workers, thread_name_prefix="rise-encode-read") as pool:
            starts = list(range(start, total, block))
            pending = [pool.submit(read, s) for s in starts[: config.prefetch]]
            nxt = config.prefetch
            while pending:
                s, x = pending.pop(0).result()
                if nxt < len(starts):
                    pending.append(pool.submit(read, starts[nxt]))
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
                _put(results, writer, (s, host, event))
                bar.update(len(x))
    finally:
        _put(results, writer, None)
        writer.join()
        bar.close()
    if getattr(writer, "error", None):
        raise writer.error
    seconds = time.perf_counter() - t0
    done = int(store.embedding_meta(name)["rows_done"])
    return {
        "name": name,
        "rows": done - start,
        "seconds": seconds,
        "rows_per_s": (done - start) / max(seconds, 1e-9),
        "complete": done == total,
        "device": str(device),
    }


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


def _write_loop(results: queue.Queue, store: Store, name: str, out_chunk: int, total: int) -> None:
    """Gather results into whole embedding chunks, write them, then advance ``rows_done``."""
    me = threading.current_thread()
    arr = store.embedding(name)
    buf: list[np.ndarray] = []
    buf_start = None
    try:
        while True:
            item = results.get()
            if item is not None:
                s, host, event = item
                if event is not None:
                    event.synchronize()
                if buf_start is None:
                    buf_start = s
                buf.append(host.numpy().copy() if event is not None else host.numpy())
            n = sum(len(b) for b in buf)
            end = None if buf_start is None else buf_start + n
            full = end is not None and (end == total or (end // out_chunk) > (buf_start // out_chunk))
            if buf and (item is None or full):
                data = np.concatenate(buf)
                cut = n if (item is None or end == total) else (end // out_chunk) * out_chunk - buf_start
                write_rows(arr, buf_start, data[:cut], store.path)  # whole chunks straight to files
                meta = dict(arr.attrs)[ATTR]
                arr.attrs[ATTR] = {**meta, "rows_done": buf_start + cut}
                rest = data[cut:]
                buf, buf_start = ([rest], buf_start + cut) if len(rest) else ([], None)
            if item is None:
                return
    except BaseException as e:  # re-raised by the main thread
        me.error = e
