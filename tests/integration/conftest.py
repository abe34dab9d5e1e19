"""Shared integration fixtures: a world with VirtualBox's defaults (see world.py) is how a test
runs vboxpy. `world` is per test, `module_world` per module (for a guest booted once); both reap
every process the world started, also when the test fails."""

from __future__ import annotations

import pytest

from tests.integration.world import World, WorldUnavailable


def _make(maker=World.current) -> World:
    try:
        return maker()
    except WorldUnavailable as e:
        pytest.skip(f"cannot make the test's world: {e}")


@pytest.fixture
def world():
    w = _make()
    yield w
    w.cleanup()


@pytest.fixture(scope="module")
def module_world():
    w = _make()
    yield w
    w.cleanup()
