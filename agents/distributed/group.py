"""The process group of a ``torchrun`` launch: set-up, rank helpers, config check, rank-0 saves.

``torchrun`` starts one process per rank and hands each its place in environment variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
:func:`init_distributed` reads them and joins the default process group with a backend chosen
from the device (``gloo`` on CPU, ``nccl`` on CUDA) and a timeout, so that a rank whose peer
died raises instead of waiting for ever. Every helper here works unchanged in a single process
(no group initialised): rank 0 of a world of 1.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from recgym._torch_io import atomic_torch_save, config_to_dict
from recgym.device import resolve_device

BACKENDS = ("gloo", "nccl")
"""The backends :func:`init_distributed` accepts (``gloo``: CPU tensors; ``nccl``: CUDA)."""
DEFAULT_TIMEOUT_S = 300.0
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True, kw_only=True)
class DistributedContext:
    """Where this process stands in the group.

    Attributes:
        rank: global rank in ``0..world_size - 1``.
        world_size: number of processes.
        local_rank: rank on this machine (the CUDA device index under ``nccl``).
        backend: ``"gloo"`` or ``"nccl"``.
        device: the device this rank computes on.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device


def backend_for(device: torch.device | str, backend: str | None = None) -> str:
    """``backend`` checked, or the one the device calls for (``nccl`` on CUDA, else ``gloo``).

    Raises:
        ValueError: an unknown backend, or ``nccl`` for a CPU device.
    """
    device = torch.device(device)
    if backend is None:
        return "nccl" if device.type == "cuda" else "gloo"
    if backend not in BACKENDS:
        raise ValueError(f"unknown torch.distributed backend {backend!r}; expected one of "
                         f"{BACKENDS} (gloo on CPU, nccl on CUDA)")  # fmt: skip
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(f"backend 'nccl' needs a CUDA device; got device {str(device)!r}")
    return backend


def init_distributed(
    device: torch.device | str = "cpu",
    *,
    backend: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> DistributedContext:
    """Join the process group described by ``torchrun``'s environment variables.

    Args:
        device: ``"cpu"`` or ``"cuda"``; under CUDA each rank takes ``cuda:LOCAL_RANK``.
        backend: ``None`` = from the device; else one of :data:`BACKENDS`.
        timeout_s: how long a collective waits for a missing peer before raising.

    Returns:
        The :class:`DistributedContext` (joining twice returns the current one).

    Raises:
        ValueError: an unknown backend, a non-positive timeout, or missing/invalid env vars.
    """
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or timeout_s <= 0:
        raise ValueError(f"timeout_s must be a positive number of seconds; got {timeout_s!r}")
    requested = torch.device(device)
    backend = backend_for(requested, backend)
    missing = [name for name in _ENV if name not in os.environ]
    if missing and not dist.is_initialized():
        raise ValueError(f"init_distributed needs torchrun's environment variables; missing "
                         f"{missing} (launch with `torchrun --nproc-per-node N ...`)")  # fmt: skip
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if requested.type == "cuda":
        requested = torch.device("cuda", local_rank)
        torch.cuda.set_device(requested)
    device = resolve_device(requested)
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=timeout_s))
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                              local_rank=local_rank, backend=dist.get_backend(),
                              device=device)  # fmt: skip


def destroy_distributed() -> None:
    """Leave the process group (no-op when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single process)."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def comm_device() -> torch.device:
    """Where collective tensors must live: the current CUDA device under NCCL, else the CPU."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over ranks of a tensor (a new tensor on ``values.device``)."""
    if not is_distributed():
        return values.clone()
    buffer = values.detach().to(comm_device()).clone()
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return buffer.to(values.device)


def all_reduce_mean_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Key-wise mean over ranks of float metrics (same keys on every rank), in float64."""
    if not is_distributed() or not metrics:
        return dict(metrics)
    keys = sorted(metrics)
    total = all_reduce_sum(torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64))
    return {k: float(v) / get_world_size() for k, v in zip(keys, total.tolist(), strict=True)}


def config_hash(config: Any) -> str:
    """SHA-256 of a dataclass config (or a plain dict of settings) in a canonical JSON form."""
    data = config if isinstance(config, dict) else config_to_dict(config)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(f"{type(config).__qualname__}:{text}".encode()).hexdigest()


def check_same_config(config: Any, *, what: str = "config") -> None:
    """Raise on **every** rank unless every rank holds the same ``config``.

    Each rank's :func:`config_hash` is gathered by all of them (one small collective), so all
    ranks see the same hashes and raise (or pass) together: nobody is left waiting.

    Raises:
        ValueError: the hashes differ; the message lists each rank's.
    """
    if not is_distributed():
        return
    digest = int(config_hash(config)[:15], 16)  # 60 bits: fits an int64
    local = torch.tensor([digest], dtype=torch.int64, device=comm_device())
    gathered = [torch.zeros_like(local) for _ in range(get_world_size())]
    dist.all_gather(gathered, local)
    hashes = [int(t.item()) for t in gathered]
    if len(set(hashes)) > 1:
        listing = ", ".join(f"rank {r}: {h:015x}" for r, h in enumerate(hashes))
        raise ValueError(
            f"the {what} differs across ranks ({listing}); every rank must be launched with "
            f"the same settings (this is rank {get_rank()})"
        )


def rank_seed(seed: int, rank: int | None = None) -> int:
    """A seed of its own per rank derived from ``seed`` (rank 0 keeps ``seed`` itself)."""
    rank = get_rank() if rank is None else rank
    if rank == 0:
        return int(seed)
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint64)[0] >> 2)


def save_on_main(obj: Any, path: str | os.PathLike) -> Path | None:
    """:func:`recgym._torch_io.atomic_torch_save` on rank 0, then a barrier.

    Returns the path on rank 0 and ``None`` elsewhere; after it returns, every rank may read
    the file.
    """
    out = atomic_torch_save(obj, path) if is_main_process() else None
    barrier()
    return out


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` in a single process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Overwrite every rank's parameters and buffers with rank ``src``'s (in place)."""
    if not is_distributed():
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        buffer = tensor.detach().to(comm_device()).clone()
        dist.broadcast(buffer, src)
        with torch.no_grad():
            tensor.copy_(buffer.to(tensor.device))


def unwrap_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict with DDP's ``module.`` prefix removed from every key that has it.

    A ``DistributedDataParallel`` wrapper's ``state_dict`` names ``w`` ``module.w``; this gives
    the plain module's names, so the weights load in one process.
    """
    prefix = "module."
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def unwrap_module(module: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (the module itself otherwise)."""
    inner = module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
    return getattr(inner, "model", inner) if isinstance(inner, ForwardAdapter) else inner


class ForwardAdapter(nn.Module):
    """``forward(*args) = fn(model, *args)``: lets DDP wrap a loss that calls any methods.

    DDP synchronises gradients of what goes through its ``forward``; a policy's losses call
    ``encode``/``item_table`` (MLE) or a reward model's ``loss``, not ``forward``. Wrapping
    ``ForwardAdapter(model, fn)`` makes one DDP forward compute the whole loss. Its state dict
    is the model's under ``model.`` (save ``adapter.model.state_dict()`` instead).
    """

    def __init__(self, model: nn.Module, fn: Any) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(self.model, *args, **kwargs)


def wrap_ddp(model: nn.Module, fn: Any, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(ForwardAdapter(model, fn))`` on ``device``.

    Buffers are not broadcast on every forward (the models keep none that training changes),
    so a rank may run extra no-grad forwards of ``model`` itself without a collective.
    """
    adapter = ForwardAdapter(model, fn)
    ids = [device.index] if device.type == "cuda" else None
    ddp_class = nn.parallel.DistributedDataParallel
    no_sync = ({"forward_sync_buffers": False}  # torch >= 2.12's name
               if "forward_sync_buffers" in inspect.signature(ddp_class).parameters
               else {"broadcast_buffers": False})  # fmt: skip
    return ddp_class(adapter, device_ids=ids, **no_sync)
