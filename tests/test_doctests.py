"""Doctests of the small helpers run with the suite."""

from __future__ import annotations

import doctest

import pytest

import agents.perturbation
import agents.quality
import agents.reinforce
import recgym.arrays
import recgym.types
import rewards.base

MODULES = [
    recgym.arrays,
    recgym.types,
    rewards.base,
    agents.perturbation,
    agents.quality,
    agents.reinforce,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
