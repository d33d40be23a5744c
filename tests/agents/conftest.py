"""Fixtures shared by the agents tests (the one-thread fixture lives in tests/conftest.py)."""

from __future__ import annotations

import pytest

from recgym import SyntheticConfig, leave_one_out, make_synthetic


@pytest.fixture(scope="module")
def synthetic():
    """A small synthetic dataset with its oracle, and its leave-one-out split."""
    config = SyntheticConfig(n_users=200, n_items=60, min_seq_len=8, max_seq_len=20)
    data = make_synthetic(config, seed=0)
    return data, leave_one_out(data.dataset)
