"""Every model constructor takes ``seed=`` (same weights, caller's RNG kept) and ``device=``."""

from __future__ import annotations

import pytest
import torch

from agents import ACVAEPolicy, BPRMFRecommender, GRUPolicy, SASRecPolicy
from recgym.factors import ItemFactors, categorical_factor
from rewards import EnergyConfig, EnergyDiscriminator, MultiFactorConfig, MultiFactorDiscriminator

N_ITEMS = 12


def _factors() -> ItemFactors:
    return ItemFactors(n_items=N_ITEMS).with_factor(categorical_factor("genre", list("ab" * 6)))


MODELS = {
    "sasrec": lambda **kw: SASRecPolicy(n_items=N_ITEMS, **kw),
    "gru": lambda **kw: GRUPolicy(n_items=N_ITEMS, **kw),
    "acvae": lambda **kw: ACVAEPolicy(n_items=N_ITEMS, **kw),
    "bpr-mf": lambda **kw: BPRMFRecommender(n_users=5, n_items=N_ITEMS, dim=8, **kw),
    "energy": lambda **kw: EnergyDiscriminator(EnergyConfig(dim=8), n_items=N_ITEMS, **kw),
    "multifactor": lambda **kw: MultiFactorDiscriminator(
        MultiFactorConfig(dim=8, max_len=8), _factors(), **kw
    ),
}


@pytest.mark.parametrize("name", MODELS)
def test_seed_fixes_the_weights_and_keeps_the_callers_rng(name):
    make = MODELS[name]
    before = torch.random.get_rng_state()
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(x, z) for x, z in zip(a.parameters(), c.parameters(), strict=True))


@pytest.mark.parametrize("name", MODELS)
def test_device_places_every_parameter_and_cuda_without_one_is_an_error(name):
    model = MODELS[name](seed=0, device="cpu")
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, ValueError), match="CUDA"):
            MODELS[name](seed=0, device="cuda")
