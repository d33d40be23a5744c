"""Device resolution: asking for CUDA without one is an error, never a silent CPU fallback."""

from __future__ import annotations

import torch


def resolve_device(device: torch.device | str | None) -> torch.device:
    """Return ``device`` as a ``torch.device`` after checking it exists.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device`` or ``None`` (= CPU).

    Raises:
        ValueError: CUDA (or MPS) was requested and is not available, or the index is too large.
    """
    dev = torch.device("cpu" if device is None else device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(dev)!r} was requested but CUDA is not available on this machine; "
                "pass device='cpu' (recgym never falls back silently)."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(dev)!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' was requested but MPS is not available; pass device='cpu'.")
    return dev
