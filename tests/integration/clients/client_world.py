"""A test world in which unmodified clients (Vagrant, Packer) find vboxpy as `VBoxManage` on PATH."""

from __future__ import annotations

import stat

import pytest

from tests.integration.world import World, WorldUnavailable


def world_with_vboxmanage(tmp_path_factory, name: str) -> World:
    """A world with VirtualBox's defaults whose PATH starts with a `VBoxManage` that runs ours
    (skips the test when the world cannot be made here)."""
    try:
        world = World.current(home=tmp_path_factory.mktemp(name))
    except WorldUnavailable as e:
        pytest.skip(f"cannot make the test's world: {e}")
    return put_vboxmanage_on_path(world)


def put_vboxmanage_on_path(world: World) -> World:
    """Start the world's PATH with a `VBoxManage` that runs this checkout's CLI, as a user's install
    provides it."""
    bin_dir = world.base / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "VBoxManage"
    wrapper.write_text(f'#!/bin/sh\nexec {world.python} -m frontends.vboxmanage.main "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    world.give(bin_dir)
    world.env["PATH"] = f"{bin_dir}:{world.env.get('PATH', '/usr/bin:/bin')}"
    return world
