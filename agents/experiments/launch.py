"""``recgym train`` across processes: ``--nproc N`` re-executes under ``torchrun``, and a run
started by ``torchrun`` joins its process group (gloo on CPU, nccl on CUDA).

Under ``torchrun`` every rank runs the whole command; the trainers see the process group and
train data-parallel (``agents.distributed``), rank 0 alone prints and writes files.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator, Sequence

import torch

from agents import distributed


def under_torchrun() -> bool:
    """True in a process that ``torchrun`` started as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ


def torchrun_argv(argv: Sequence[str], nproc: int) -> list[str]:
    """The command that reruns ``recgym <argv>`` (without ``--nproc``) on ``nproc`` ranks."""
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ValueError(f"--nproc must be an int >= 1; got {nproc!r}")
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "-m", "agents.experiments.cli", *rest]  # fmt: skip


def exec_torchrun(argv: Sequence[str], nproc: int) -> None:
    """Replace this process by ``torchrun`` running the same command on ``nproc`` ranks."""
    command = torchrun_argv(argv, nproc)
    print(f"== recgym train on {nproc} processes: {' '.join(command[1:])}", flush=True)
    os.execv(command[0], command)


@contextlib.contextmanager
def distributed_run(device: torch.device) -> Iterator[distributed.DistributedContext | None]:
    """Join ``torchrun``'s process group for the block (``None`` outside torchrun); ranks
    other than 0 print nothing."""
    if not under_torchrun():
        yield None
        return
    context = distributed.init_distributed(device)
    quiet = contextlib.redirect_stdout(io.StringIO()) if context.rank else contextlib.nullcontext()
    try:
        with quiet:
            yield context
    finally:
        distributed.destroy_distributed()
