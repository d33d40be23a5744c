"""Doctests of the small helpers run with the suite."""

from __future__ import annotations

import doctest

import pytest

import recgym.arrays


@pytest.mark.parametrize("module", [recgym.arrays])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
