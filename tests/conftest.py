"""Shared fixtures: tiny synthetic catalogues, seeded generators, and the real-data directory.

Real datasets are read from ``../shared/data`` beside the checkout (override with
``RECGYM_DATA_DIR``); tests that need them skip when the files are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym import SequenceDataset, leave_one_out
from recgym.factors import ItemFactors, binned_factor, categorical_factor, multi_factor

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("RECGYM_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def require_data(*relative: str) -> Path:
    """Return ``DATA_DIR`` after checking the files exist, else skip the test."""
    missing = [r for r in relative if not (DATA_DIR / r).exists()]
    if missing:
        pytest.skip(f"real data not found under {DATA_DIR}: {missing} (set RECGYM_DATA_DIR)")
    return DATA_DIR


def gpu_available() -> bool:
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not gpu_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Test tensors are tiny: threads only add OpenMP overhead, and on a shared 2-core machine
    # oversubscription makes them 10-30x slower. Restore the setting afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def tiny_dataset() -> SequenceDataset:
    """7 items, 5 users of lengths 2..6, with a categorical, a multi and a binned factor."""
    sequences = [[1, 2], [3, 4, 5], [2, 4, 6, 1], [7, 1, 3, 5, 2], [6, 5, 4, 3, 2, 1]]
    n_items = 7
    factors = ItemFactors(n_items=n_items)
    factors = factors.with_factor(categorical_factor("genre", list("aabbcca")))
    factors = factors.with_factor(
        multi_factor("tags", [["x"], ["x", "y"], [], ["z"], ["y", "z"], ["x"], ["y"]])
    )
    factors = factors.with_factor(binned_factor("price", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 3))
    return SequenceDataset.from_sequences(sequences, n_items=n_items, factors=factors, name="tiny")


@pytest.fixture
def tiny_split(tiny_dataset):
    return leave_one_out(tiny_dataset)
