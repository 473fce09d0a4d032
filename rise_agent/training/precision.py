"""Whether this machine can run the learner in bf16: a one-off probe of a tiny LSTM under bf16 autocast.

oneDNN on a CPU without native bf16 support (no AVX-512 BF16, e.g. a 2-core AMD EPYC) cannot build a bf16
LSTM primitive ("could not create a primitive descriptor for the LSTM forward propagation primitive"), and
RISE's context stream is an LSTM. The probe runs once per device type per process; :func:`check_precision`
turns a failure into one line naming the reason and the fix, before anything is built.
"""

from __future__ import annotations

import functools

import torch

from rise_data.errors import UserError

__all__ = ["bf16_lstm_error", "bf16_lstm_supported", "check_precision"]


def _probe(device_type: str) -> None:
    lstm = torch.nn.LSTM(4, 4, batch_first=True).to(device_type)
    x = torch.zeros(1, 2, 4, device=device_type)
    with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16):
        lstm(x)


@functools.cache
def bf16_lstm_error(device_type: str = "cpu") -> str | None:
    """None if a bf16-autocast LSTM runs on ``device_type``, else the first line of its error (cached)."""
    try:
        _probe(device_type)
    except RuntimeError as e:
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return None


def bf16_lstm_supported(device_type: str = "cpu") -> bool:
    """Whether a bf16-autocast LSTM runs here (tests of the bf16 learner with K > 0 skip when not)."""
    return bf16_lstm_error(device_type) is None


def check_precision(precision: str, context_len: int, device: torch.device) -> None:
    """Refuse ``--precision bf16`` with K > 0 where the LSTM cannot run in bf16 (a UserError: exit 2)."""
    if precision != "bf16" or context_len == 0:
        return
    error = bf16_lstm_error(device.type)
    if error is not None:
        where = "CPU's oneDNN" if device.type == "cpu" else f"{device.type} device"
        raise UserError(
            f"--precision bf16: this {where} cannot run a bf16 LSTM ({error}); "
            "use --precision fp32 (or -k 0, which has no LSTM, or a GPU)"
        )
