"""A real vboxsvc per test module for API-level tests whose client is the test process itself:
temporary VBOX_USER_HOME and runtime dir, machine folder inside.

These set VBOX_USER_HOME because the test process cannot leave its own mount namespace: as root,
VirtualBox's default home would be root's real one. Tests that run vboxpy as a user would (CLI,
scripts, VM processes as subprocesses) use the `world` fixtures of tests/integration/conftest.py,
which keep VirtualBox's defaults."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration.world import pid_alive


def wait_for(cond, timeout: float = 20.0, interval: float = 0.02):
    """Poll `cond()` until it is truthy; returns its value (or the last one on timeout)."""
    deadline = time.monotonic() + timeout
    value = cond()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = cond()
    return value


class Env:
    """Environment of one isolated service: paths and the env vars clients need."""

    def __init__(self, base: Path):
        self.base = base
        self.home = base / "home"
        self.run = base / "run"
        self.vms = base / "vms"
        for d in (self.home, self.run, self.vms):
            d.mkdir(mode=0o700)

    def vars(self, **extra) -> dict[str, str]:
        env = dict(os.environ)
        env.update(VBOX_USER_HOME=str(self.home), VBOXPY_RUNTIME_DIR=str(self.run), **extra)
        return env


def make_env() -> Env:
    # ipc:// paths must stay short (108 bytes): keep the base in /tmp
    return Env(Path(tempfile.mkdtemp(prefix="vbx", dir="/tmp")))


def stop_service(pid: int) -> None:
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        if not wait_for(lambda: not pid_alive(pid), 10):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def svc_env():
    env = make_env()
    mp = pytest.MonkeyPatch()
    mp.setenv("VBOX_USER_HOME", str(env.home))
    mp.setenv("VBOXPY_RUNTIME_DIR", str(env.run))
    mp.setenv("VBOXSVC_SHUTDOWN_DELAY_MS", "2000")
    yield env
    mp.undo()
    shutil.rmtree(env.base, ignore_errors=True)


@pytest.fixture(scope="module")
def client(svc_env):
    """One connection kept for the module (it also keeps the service alive)."""
    from vboxsvc.ipc.client import connect
    c = connect()
    c.virtualbox.system_properties.default_machine_folder = str(svc_env.vms)
    yield c
    pid = c.service_pid
    c.close()
    stop_service(pid)


@pytest.fixture
def vbox(client):
    return client.virtualbox


@pytest.fixture
def new_vm(vbox, svc_env, request):
    """Factory: a registered machine with a unique name."""
    made = []

    def make(name: str | None = None, os_type: str = "Linux_64"):
        name = name or f"{request.node.name[:40]}-{len(made)}"
        m = vbox.create_machine("", name, os_type_id=os_type)
        m.save_settings()
        vbox.register_machine(m)
        made.append(m)
        return m
    return make
