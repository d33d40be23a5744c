"""Device resolution: asking for CUDA without one is an error, never a silent CPU fallback."""

from __future__ import annotations

import torch


def resolve_device(device: torch.device | str | None) -> torch.device:
    """Return ``device`` as a ``torch.device`` after checking it exists.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device`` or ``None`` (= CPU).

    Raises:
        TypeError: ``device`` is not a string, a ``torch.device`` or ``None``.
        ValueError: not a device name (``"auto"`` included: recgym never picks a device for
            you), or CUDA (or MPS) was requested and is not available, or the index is too large.
    """
    if device is not None and not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str, a torch.device or None; got {device!r}")
    try:
        dev = torch.device("cpu" if device is None else device)
    except RuntimeError as err:
        raise ValueError(
            f"device={device!r} is not a torch device: pass 'cpu', 'cuda', 'cuda:1' or 'mps'"
            + (" (recgym never chooses one for you)" if device == "auto" else "")
        ) from err
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
