"""Files saved by main before the agents/ layout change still load (tests/fixtures/legacy).

Those files name their classes by module path (``"agents.sasrec.SASRecPolicy"``); today's files
name them by registry key (``"sasrec"``). ``recgym._torch_io.LEGACY_KEYS`` translates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agents import ACVAEPolicy, BPRMFRecommender, GRUPolicy, SASRecPolicy
from agents.checkpoint import load_checkpoint, restore_checkpoint
from agents.experiments import runs
from recgym._torch_io import LEGACY_KEYS, class_key
from recgym.errors import RecGymError
from recgym.evaluation import evaluate
from rewards import EnergyDiscriminator, MultiFactorDiscriminator

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
CLASSES = {
    "sasrec.pt": SASRecPolicy,
    "gru.pt": GRUPolicy,
    "acvae.pt": ACVAEPolicy,
    "bpr_mf.pt": BPRMFRecommender,
    "energy.pt": EnergyDiscriminator,
    "multifactor.pt": MultiFactorDiscriminator,
}


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_a_model_saved_under_module_paths_loads_and_resaves_under_its_key(name, tmp_path):
    legacy = torch.load(LEGACY / name, weights_only=True)
    assert legacy["class"] in LEGACY_KEYS  # the file really is an old-style one
    cls = CLASSES[name]
    model = cls.load(LEGACY / name)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, legacy["state_dict"][key])
    resaved = torch.load(model.save(tmp_path / name), weights_only=True)
    assert resaved["class"] == class_key(cls) == LEGACY_KEYS[legacy["class"]]
    assert cls.load(tmp_path / name).state_dict().keys() == model.state_dict().keys()


def test_a_legacy_file_of_another_class_is_refused_by_key():
    with pytest.raises(RecGymError, match="holds a 'agents.sasrec.SASRecPolicy'; expected a 'gru'"):
        GRUPolicy.load(LEGACY / "sasrec.pt")


def test_a_legacy_trainer_checkpoint_restores():
    checkpoint = load_checkpoint(LEGACY / "trainer_checkpoint.pt")
    sasrec = SASRecPolicy.load(LEGACY / "sasrec.pt")
    energy = EnergyDiscriminator.load(LEGACY / "energy.pt")
    for p in sasrec.parameters():
        torch.nn.init.zeros_(p)
    optimizer = torch.optim.Adam(sasrec.parameters(), lr=1e-3)
    generator, rng = torch.Generator(), np.random.default_rng(5)
    restore_checkpoint(
        checkpoint, policy=sasrec, reward_model=energy, optimizers={"policy": optimizer},
        generators={"g": generator}, numpy_rng=rng,
    )  # fmt: skip
    reference = SASRecPolicy.load(LEGACY / "sasrec.pt")
    for a, b in zip(sasrec.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert checkpoint["round"] == 3
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state


def test_a_legacy_recgym_train_run_rebuilds_and_evaluates():
    payload = runs.load_run(LEGACY / "train_run.pt")
    policy = runs.rebuild_policy(payload["policy"], device=torch.device("cpu"))
    reward = runs.rebuild_reward_model(payload["reward_model"], device=torch.device("cpu"))
    assert isinstance(policy, SASRecPolicy) and isinstance(reward, MultiFactorDiscriminator)
    data = runs.load_run_data(payload["data"], payload["data"]["synthetic"])
    metrics = evaluate(policy, data.split, "test", protocols=("full",), ks=(10,),
                       max_len=policy.max_len)  # fmt: skip
    ndcg = metrics.query("metric == 'NDCG' and k == 10")["value"].item()
    assert ndcg == pytest.approx(payload["metrics"]["full/NDCG@10"], abs=1e-6)
