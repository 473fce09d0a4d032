"""``EncodeConfig``: everything ``rise-data encode`` is asked to do (torch-free: the CLI builds its options here).

Each field's trailing comment is its ``--help`` text (rise_data.options); the config is saved with the
embeddings it made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rise_data.options import ConfigError, param


@dataclass(frozen=True)
class EncodeConfig:
    """Everything ``rise-data encode`` was asked to do; saved with the embeddings."""

    store: str = param(help="store path (a directory, or an s3:// URL)")
    encoder: str = param("resnet18", "resnet18, efficientnet-lite0, downsample, or a plug-in module:function")
    weights: str | None = param(
        None, "state-dict file (loaded with weights_only), 'untrained', or the encoder's default"
    )
    name: str | None = param(None, "embeddings array name (default: the encoder name)")
    source: str | None = param(None, "array to encode: frame (RGB) or obs (gray); default: frame if stored")
    batch_size: int = param(512, "frames per device batch (rounded to whole chunks)")
    device: str = param("auto", "auto, cpu, cuda, cuda:1 ...")
    dtype: Literal["float16", "float32"] = param("float16", "stored dtype (numpy and zarr have no bfloat16)")
    amp: bool = param(True, "bf16 autocast on CUDA")
    channels_last: bool = param(True, "channels_last memory format on CUDA")
    compile: bool = param(False, "torch.compile the encoder (CUDA)")
    read_workers: int = param(4, "background read/decompress threads")
    prefetch: int = param(6, "blocks in flight between reading, the device and writing (bounds memory)")
    overwrite: bool = param(False, "redo embeddings that exist under this name")
    progress: bool = param(True, "show a progress bar")
    threads: int | None = param(None, "torch CPU threads per process (default: torch's choice)")

    def __post_init__(self) -> None:
        if self.dtype not in ("float16", "float32"):  # numpy/zarr have no bfloat16 to store
            raise ConfigError(f"--dtype {self.dtype} cannot be stored; use float16 (the default) or float32")
        for name in ("batch_size", "read_workers", "prefetch"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
