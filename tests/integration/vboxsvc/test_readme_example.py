"""The client library's documented example runs as written (vboxsvc/README-client.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from .conftest import make_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_first_example_runs():
    with open(os.path.join(ROOT, "vboxsvc", "README-client.md")) as f:
        code = re.findall(r"```python\n(.*?)```", f.read(), re.S)[0]
    env = make_env()
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             env=env.vars(VBOXSVC_SHUTDOWN_DELAY_MS="200", PYTHONPATH=ROOT))
        assert out.returncode == 0, out.stderr
        assert "demo 512 MB, 2 CPUs, state PoweredOff" in out.stdout
        assert "expected: VBOX_E_INVALID_VM_STATE The machine is not mutable (state is PoweredOff)" in out.stdout
        assert "IMachineRegisteredEvent" in out.stdout
    finally:
        shutil.rmtree(env.base, ignore_errors=True)
