"""Runs the real `vboxmanage` CLI as a subprocess against a real service in a temporary home."""

import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]

if importlib.util.find_spec("vboxsvc.server.main") is None:
    pytest.skip("the service (vboxsvc.server.main) is not in the tree yet", allow_module_level=True)


class Cli:
    def __init__(self, home: pathlib.Path):
        self.home = home
        self.env = dict(os.environ, HOME=str(home), VBOX_USER_HOME=str(home / ".config" / "VirtualBox"),
                        VBOXPY_RUNTIME_DIR=str(home / "run"), PYTHONPATH=str(ROOT))
        self.env.pop("XDG_CONFIG_HOME", None)

    def __call__(self, *args: str, check: int | None = None):
        proc = subprocess.run([sys.executable, "-m", "frontends.vboxmanage.main", *args], cwd=str(self.home),
                              env=self.env, capture_output=True, text=True, timeout=120)
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
        run = self.home / "run"
        for pid_file in run.glob("vboxsvc*.pid"):
            try:
                pid = int(pid_file.read_text().split()[0])
            except (ValueError, IndexError, OSError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)


@pytest.fixture
def vbm(tmp_path):
    cli = Cli(tmp_path)
    # as root the default machine folder is /root/VirtualBox VMs (RTPathUserHome ignores $HOME): keep VMs here
    cli("setproperty", "machinefolder", str(tmp_path / "VirtualBox VMs"), check=0)
    yield cli
    cli.stop_service()
