"""Data-parallel training on ``torch.distributed`` (DDP launched by ``torchrun``).

- :mod:`~agents.distributed.group`: the process group (backend from the device, a timeout),
  rank helpers, the config-hash check, rank-0 atomic saves, DDP wrapping of a loss;
- :mod:`~agents.distributed.shard`: disjoint seeded shards of users and minibatches;
- :mod:`~agents.distributed.evaluation`: full-ranking evaluation sharded over ranks, equal to
  the single-process result to the last digit.

``agents.mle.MLETrainer``, ``agents.reinforce.PolicyGradientTrainer`` and
``agents.adversarial.AdversarialTrainer`` use these when a process group with more than one
rank is initialised (see ``docs/distributed.md``).
"""

from agents.distributed.evaluation import sharded_full_ranks, sharded_validation_metrics
from agents.distributed.group import (
    BACKENDS,
    DistributedContext,
    ForwardAdapter,
    all_reduce_mean_metrics,
    all_reduce_sum,
    backend_for,
    barrier,
    broadcast_module,
    check_same_config,
    config_hash,
    destroy_distributed,
    gather_objects,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    rank_seed,
    save_on_main,
    unwrap_module,
    unwrap_state_dict,
    wrap_ddp,
)
from agents.distributed.shard import check_world_size, rank_slice, shard_users

__all__ = [
    "BACKENDS",
    "DistributedContext",
    "ForwardAdapter",
    "all_reduce_mean_metrics",
    "all_reduce_sum",
    "backend_for",
    "barrier",
    "broadcast_module",
    "check_same_config",
    "check_world_size",
    "config_hash",
    "destroy_distributed",
    "gather_objects",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "rank_seed",
    "rank_slice",
    "save_on_main",
    "shard_users",
    "sharded_full_ranks",
    "sharded_validation_metrics",
    "unwrap_module",
    "unwrap_state_dict",
    "wrap_ddp",
]
