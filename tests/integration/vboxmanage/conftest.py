"""Runs the real `vboxmanage` CLI as a subprocess against a real service, with VirtualBox's defaults
in a scratch world (tests/integration/world.py: fresh HOME, no VBOX_USER_HOME)."""

import os
import signal
import time

import pytest

from tests.integration.world import World, WorldUnavailable, pid_alive


class Cli:
    """`vboxmanage` in a world; `home` is the world's HOME (machines go to `home/VirtualBox VMs`)."""

    def __init__(self, world: World):
        self.world = world
        self.home = world.home
        self.env = world.env

    def __call__(self, *args: str, check: int | None = None):
        proc = self.world.run([self.world.python, "-m", "frontends.vboxmanage.main", *args], cwd=self.home,
                              env=self.env, timeout=120)
        if check is not None:
            assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc.returncode, proc.stdout, proc.stderr

    def machinereadable(self, vm: str) -> dict:
        code, out, err = self("showvminfo", vm, "--machinereadable", check=0)
        pairs = {}
        for line in out.splitlines():
            key, _, value = line.partition("=")
            if value.startswith('"'):
                pairs[key.strip('"')] = value[1:-1]
            else:  # numbers are unquoted; `VRDEClients==0` is VBoxManage's own quirk
                pairs[key.strip('"')] = int(value.lstrip("="))
        return pairs

    def stop_service(self) -> None:
        for pid in self.world.services():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(500):
                if not pid_alive(pid):
                    break
                time.sleep(0.01)


@pytest.fixture
def vbm(tmp_path):
    try:
        world = World.current(home=tmp_path)
    except WorldUnavailable as e:
        pytest.skip(f"cannot make the test's world: {e}")
    cli = Cli(world)
    # as root the default machine folder is root's (RTPathUserHome ignores $HOME), which the world
    # hides in its mount namespace: keep VMs where the test can see them
    cli("setproperty", "machinefolder", str(world.home / "VirtualBox VMs"), check=0)
    yield cli
    world.cleanup()
