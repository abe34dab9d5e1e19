"""Shared integration fixtures: a world with VirtualBox's defaults (see world.py) is how a test
runs vboxpy. `world` is per test, `module_world` per module (for a guest booted once); both reap
every process the world started, also when the test fails."""

from __future__ import annotations

import pytest

from tests.integration.world import World, WorldUnavailable, make_user, remove_user, user_python


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


@pytest.fixture(scope="session")
def ordinary_user():
    """(name, python): a throw-away account without privileges and an interpreter it can run;
    the test skips, saying why, where either cannot be had. The account is removed afterwards."""
    name, why = make_user()
    if name is None:
        pytest.skip(f"no ordinary user to run as: {why}")
    try:
        python, why = user_python(name)
        if python is None:
            pytest.skip(why)
        yield name, python
    finally:
        remove_user(name)
