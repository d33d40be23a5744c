"""MFGAN's generator update as its official code does it: discriminator-weighted MLE.

The official MFGAN code (``ReyonRen/MFGAN``, ``gen_model.py`` / ``main.py``), unlike its paper's
Eq. 11-12, makes no policy-gradient step. Its generator step is SASRec's own next-item loss over
the ground-truth items at every position, with the positive term of each training sequence
multiplied by one scalar: the mean "real" probability the discriminators give to that sequence
with its last item replaced by the generator's greedy top-1.

:class:`WeightedMLEGenerator` is that step. Its ``weights`` setting gives the controls that tell
the adversary's contribution apart from "more MLE epochs" on the same code path:

- ``"discriminator"``: the published update (weight = D(fake) per sequence);
- ``"one"``: weight 1: exactly continued MLE (step for step the same as :class:`MLETrainer`);
- ``"batch_mean"``: every sequence gets the batch's mean D: the overall scale, no per-sequence
  information;
- ``"permuted"``: the batch's D values permuted among its sequences: the same weight distribution,
  no link to the sequence it scores. MFGAN minus this control is the adversary's contribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from agents.actions import action_logits
from agents.mle import LOSSES, sample_negatives, sequence_loss
from agents.policy import SequencePolicy
from agents.sequences import training_windows
from recgym._checks import check_float, check_int, check_n_items
from recgym._torch_io import evaluating, optimizer_step
from recgym.device import resolve_device
from recgym.errors import RecGymError
from recgym.splits import Split

WEIGHTS: tuple[str, ...] = ("discriminator", "one", "batch_mean", "permuted")
_GAN_FORMS = ("d", "log_d", "neg_log_1m_d", "logit")


@dataclass(frozen=True, kw_only=True)
class WeightedMLEConfig:
    """Settings of :class:`WeightedMLEGenerator` (one ``step`` = one minibatch).

    Attributes:
        batch_size: training windows per step.
        lr: Adam learning rate (betas ``(0.9, 0.98)``, as the MLE trainer).
        loss: ``"ce"`` (full softmax, positive term = the whole CE) or ``"bce"`` (one sampled
            negative; only the positive term is weighted, as the official code).
        weights: ``"discriminator"``, ``"one"``, ``"batch_mean"`` or ``"permuted"``.
        exclude_seen: the greedy top-1 that replaces the last item skips items already seen.
        max_grad_norm: gradient-norm clip, ``None`` for none.
        seed: the batch order, BCE negatives and the permutation of the ``"permuted"`` control.
        loss_chunk: rows per chunk of the fused CE (as ``MLEConfig.loss_chunk``; ``None`` =
            dense logits).
    """

    batch_size: int = 128
    lr: float = 1e-3
    loss: str = "ce"
    weights: str = "discriminator"
    exclude_seen: bool = True
    max_grad_norm: float | None = None
    seed: int = 0
    loss_chunk: int | None = 256

    def __post_init__(self) -> None:
        check_int(self, "batch_size", 1)
        if self.loss_chunk is not None:
            check_int(self, "loss_chunk", 1)
        check_int(self, "seed", 0)
        check_float(self, "lr", positive=True)
        check_float(self, "max_grad_norm", positive=True, optional=True)
        if self.loss not in LOSSES:
            raise ValueError(f"WeightedMLEConfig.loss must be one of {LOSSES}; got {self.loss!r}")
        if self.weights not in WEIGHTS:
            raise ValueError(
                f"WeightedMLEConfig.weights must be one of {WEIGHTS}; got {self.weights!r}"
            )
        if not isinstance(self.exclude_seen, bool):
            raise TypeError(
                f"WeightedMLEConfig.exclude_seen must be a bool; got {self.exclude_seen!r}"
            )


@torch.no_grad()
def greedy_last_item_fakes(
    policy: SequencePolicy, inputs: Tensor, *, exclude_seen: bool = True
) -> Tensor:
    """``(B, L)`` fakes: each input window with the policy's greedy next item appended.

    Windows keep their length ``L`` (the oldest item drops). The real counterpart is the input
    with ``targets[:, -1]`` appended, the training sequence; the fake replaces that last item by
    the generator's top-1 (the official MFGAN negative, k = 1).
    """
    with evaluating(policy):
        logits = action_logits(policy(inputs), inputs, exclude_seen=exclude_seen)
    return torch.cat([inputs[:, 1:], logits.argmax(dim=1, keepdim=True)], dim=1)


@torch.no_grad()
def discriminator_probability(reward_model: nn.Module, sequences: Tensor) -> Tensor:
    """``(B,)`` the probability ``D = sigmoid(logit)`` that each ``(B, L)`` sequence is real.

    Raises:
        ValueError: the reward model is not a sigmoid discriminator (e.g. an energy model).
    """
    form = getattr(reward_model, "reward_form", None)
    if form not in _GAN_FORMS:
        raise ValueError(
            f"weighted MLE needs a sigmoid discriminator (reward_form in {_GAN_FORMS}); "
            f"got a {type(reward_model).__name__} with reward_form {form!r}"
        )
    with evaluating(reward_model):
        return torch.sigmoid(reward_model(sequences).float())


class WeightedMLEGenerator:
    """One discriminator-weighted MLE step per ``step()`` (shuffled epochs over the windows).

    Args:
        policy: the generator, trained in place.
        reward_model: a sigmoid discriminator scoring ``(B, L)`` sequences.
        split: its training windows are the data.
        config: the settings.
        max_len: window length (default: the policy's).
        device: where the windows and the steps live.
    """

    def __init__(
        self,
        policy: SequencePolicy,
        reward_model: nn.Module,
        split: Split,
        config: WeightedMLEConfig | None = None,
        *,
        max_len: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config = c = WeightedMLEConfig() if config is None else config
        if not isinstance(c, WeightedMLEConfig):
            raise TypeError(f"config must be a WeightedMLEConfig; got {type(c).__name__}")
        check_n_items("reward_model", reward_model.n_items, policy.n_items)
        self.device = resolve_device(device)
        self.policy, self.reward_model = policy.to(self.device), reward_model.to(self.device)
        max_len = max_len or policy.max_len
        self.inputs, self.targets = training_windows(split, max_len, device=self.device)
        if len(self.inputs) == 0:
            raise RecGymError(f"{split!r} has no training targets (every user has < 2 items)")
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=c.lr, betas=(0.9, 0.98))
        self.order = torch.Generator().manual_seed(c.seed)
        self.negatives = torch.Generator(device=self.device).manual_seed(c.seed + 1)
        self.permutation = torch.Generator(device=self.device).manual_seed(c.seed + 2)
        self.epoch_order: Tensor | None = None
        self.position = 0

    @property
    def generators(self) -> dict[str, torch.Generator]:
        """The generators whose states an exact resume needs."""
        return {"wmle_order": self.order, "wmle_negatives": self.negatives,
                "wmle_permutation": self.permutation}  # fmt: skip

    def state(self) -> dict[str, Any]:
        """Where in the current epoch the steps are (checkpoint ``extra``)."""
        return {"epoch_order": self.epoch_order, "position": self.position}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state`."""
        order = state["epoch_order"]
        self.epoch_order = None if order is None else order.to(self.device)
        self.position = int(state["position"])

    def state_dict(self) -> dict[str, Any]:
        """Optimiser, generators and epoch position (the :class:`GeneratorAlgorithm` API)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "generators": {k: g.get_state() for k, g in self.generators.items()},
            **self.state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.optimizer.load_state_dict(state["optimizer"])
        for key, generator in self.generators.items():
            generator.set_state(state["generators"][key])
        self.set_state(state)

    def weights(self, inputs: Tensor) -> Tensor:
        """``(B,)`` per-sequence weights of the positive term under ``config.weights``."""
        c = self.config
        if c.weights == "one":
            return torch.ones(len(inputs), device=inputs.device)
        fakes = greedy_last_item_fakes(self.policy, inputs, exclude_seen=c.exclude_seen)
        d = discriminator_probability(self.reward_model, fakes)
        if c.weights == "batch_mean":
            return d.mean().expand_as(d)
        if c.weights == "permuted":
            perm = torch.randperm(len(d), generator=self.permutation, device=self.device)
            return d[perm.to(d.device)]
        return d

    def _next_batch(self) -> Tensor:
        n, size = len(self.inputs), self.config.batch_size
        if self.epoch_order is None or self.position >= n:
            # the same draw as agents.sequences.minibatches, so weights "one" == MLETrainer
            self.epoch_order = torch.randperm(n, generator=self.order).to(self.device)
            self.position = 0
        index = self.epoch_order[self.position : self.position + size]
        self.position += size
        return index

    def step(self) -> dict[str, float]:
        """One weighted-MLE update on the next minibatch; returns its loss and weight stats."""
        c, policy = self.config, self.policy
        index = self._next_batch()
        inputs, targets = self.inputs[index], self.targets[index]
        w = self.weights(inputs)
        negatives = (
            sample_negatives(targets, policy.n_items, self.negatives) if c.loss == "bce" else None
        )
        policy.train()
        loss = sequence_loss(
            policy,
            inputs,
            targets,
            loss=c.loss,
            negatives=negatives,
            weights=w,
            chunk_size=c.loss_chunk,
        )
        optimizer_step(loss, self.optimizer, policy.parameters(), max_grad_norm=c.max_grad_norm,
                       what="weighted MLE loss", hint="lower WeightedMLEConfig.lr")  # fmt: skip
        return {"gen/loss": float(loss.detach()), "gen/weight_mean": float(w.mean()),
                "gen/weight_std": float(w.std()) if len(w) > 1 else 0.0}  # fmt: skip
