"""Rank functions for tests/agents/test_distributed.py, started with torch.multiprocessing.

Each rank joins a gloo group on 127.0.0.1 (as torchrun would tell it to through environment
variables), runs the named scenarios in order and writes ``rank<r>.pt``: a dict scenario ->
result (or the text of the error it raised). Module-level so spawned children can import it.
"""

from __future__ import annotations

import os
import signal
import socket
import traceback
from pathlib import Path

import torch

TINY = dict(n_users=40, n_items=30, min_seq_len=5, max_seq_len=12)
SASREC = dict(max_len=10, dim=16, n_blocks=1, n_heads=1, dropout=0.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tiny_data(n_users: int = TINY["n_users"]):
    from recgym import SyntheticConfig, leave_one_out, make_synthetic

    data = make_synthetic(SyntheticConfig(**{**TINY, "n_users": n_users}), seed=0)
    return data, leave_one_out(data.dataset)


def tiny_policy(n_items: int, dropout: float = 0.0):
    from agents.sasrec import SASRecConfig, SASRecPolicy

    return SASRecPolicy(SASRecConfig(**{**SASREC, "dropout": dropout}), n_items=n_items, seed=0)


def mle_config(**kw):
    from agents.mle import MLEConfig

    return MLEConfig(**{"epochs": 3, "batch_size": 16, "eval_batch_size": 7, "patience": 10,
                        "seed": 0, **kw})  # fmt: skip


def worker(rank: int, world: int, port: int, scenarios: list[str], out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    from agents import distributed

    distributed.init_distributed("cpu", timeout_s=30)
    results: dict = {}
    for name in scenarios:
        try:
            results[name] = SCENARIOS[name](Path(out))
        except Exception as err:  # noqa: BLE001 - the test reads the message
            results[name] = {"error": f"{type(err).__name__}: {err}",
                             "trace": traceback.format_exc()}  # fmt: skip
    torch.save(results, Path(out) / f"rank{rank}.pt")
    distributed.destroy_distributed()


# ----------------------------------------------------------------------------- scenarios
def grads(out: Path) -> dict:
    """One DDP step's gradients on rows ``rank::2`` of a global batch of 16 windows."""
    from agents.distributed import rank_slice, wrap_ddp
    from agents.distributed.training import scaled_shard_loss
    from agents.mle import sequence_loss
    from agents.sequences import training_windows

    _, split = tiny_data()
    policy = tiny_policy(split.dataset.n_items)
    inputs, targets = (t[:16] for t in training_windows(split, 10))
    n_global = int((targets > 0).sum())

    def fn(model, i, t):
        return scaled_shard_loss(model, i, t, None, n_global, loss_fn=sequence_loss, loss="ce")

    model = wrap_ddp(policy, fn, torch.device("cpu"))
    model(rank_slice(inputs), rank_slice(targets)).backward()
    return {k: p.grad.clone() for k, p in policy.named_parameters()}


def sharded_eval(out: Path) -> dict:
    from agents.distributed import sharded_full_ranks, sharded_validation_metrics

    _, split = tiny_data()
    policy = tiny_policy(split.dataset.n_items)
    ranks = sharded_full_ranks(policy, split, "test", max_len=10, batch_size=7)
    metrics = sharded_validation_metrics(policy, split, max_len=10, batch_size=7, device="cpu")
    return {"ranks": ranks, "metrics": metrics}


def _mle_run(out: Path, name: str, **config) -> dict:
    from agents.mle import MLETrainer

    _, split = tiny_data()
    policy = tiny_policy(split.dataset.n_items, dropout=0.2)
    trainer = MLETrainer(policy, split, mle_config(**config),
                         checkpoint_path=out / name / "best.pt",
                         state_path=out / name / "state.pt")  # fmt: skip
    result = trainer.fit()
    return {"history": result.history.drop(columns=["time/epoch_s", "time/elapsed_s"]),
            "weights": {k: v.clone() for k, v in policy.state_dict().items()}}  # fmt: skip


def mle(out: Path) -> dict:
    return _mle_run(out, "mle")


def mle_bce(out: Path) -> dict:
    return _mle_run(out, "bce", loss="bce", epochs=1)


def mle_killed(out: Path) -> dict:
    """The same run as ``mle`` in another directory, SIGKILLed once epoch 2 is saved."""
    from agents.distributed.mle import DistributedMLEMixin

    original = DistributedMLEMixin._save_shared_state

    def save_then_die(self, rows, *args):
        original(self, rows, *args)
        if len(rows) == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    DistributedMLEMixin._save_shared_state = save_then_die
    return _mle_run(out, "resumed")


def mle_resumed(out: Path) -> dict:
    return _mle_run(out, "resumed")


def mismatched_config(out: Path) -> dict:
    from agents.mle import MLETrainer

    _, split = tiny_data()
    MLETrainer(tiny_policy(split.dataset.n_items), split, mle_config(lr=1e-3 * (1 + get_rank())))
    return {}


def too_few_users(out: Path) -> dict:
    from agents.mle import MLETrainer

    _, split = tiny_data(n_users=1)
    MLETrainer(tiny_policy(split.dataset.n_items), split, mle_config(epochs=1)).fit()
    return {}


def unknown_backend(out: Path) -> dict:
    from agents.distributed import init_distributed

    init_distributed("cpu", backend="mpi")
    return {}


def adversarial(out: Path) -> dict:
    """One MFGAN round (1 MLE pre-training epoch, 1 reward pre-training epoch) on 2 ranks."""
    from agents.adversarial import AdversarialTrainer
    from agents.adversarial_config import AdversarialConfig
    from rewards.multifactor import MultiFactorConfig, MultiFactorDiscriminator

    data, split = tiny_data()
    policy = tiny_policy(split.dataset.n_items, dropout=0.2)
    reward = MultiFactorDiscriminator(MultiFactorConfig(dim=8, max_len=10), split.factors(), seed=0)
    config = AdversarialConfig(n_rounds=1, rollout_batch_size=8, horizon=3, max_len=10,
                               d_batch_size=8, n_eval_users=8, n_heldout=8, eval_batch_size=7,
                               pretrain_policy_epochs=1, pretrain_reward_epochs=1,
                               checkpoint_dir=str(out / "adversarial"))  # fmt: skip
    trainer = AdversarialTrainer(policy, reward, split, config, user_model=data.user_model,
                                 mle_config=mle_config(epochs=1))  # fmt: skip
    history = trainer.train()
    return {"history": history.drop(columns=["time/round_s"]),
            "policy": {k: v.clone() for k, v in policy.state_dict().items()},
            "reward": {k: v.clone() for k, v in reward.state_dict().items()},
            "users": trainer.pg.env.eligible_users.clone()}  # fmt: skip


def get_rank() -> int:
    from agents.distributed import get_rank as rank

    return rank()


SCENARIOS = {
    f.__name__: f
    for f in (grads, sharded_eval, mle, mle_bce, mle_killed, mle_resumed, mismatched_config,
              too_few_users, unknown_backend, adversarial)
}  # fmt: skip
