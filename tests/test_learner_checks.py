"""The property suite of ``tests/checks.py`` over every learner configuration."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from checks import CHECKS, CONFIGS


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_property(check: Callable[[str], None], config: str) -> None:
    check(config)
