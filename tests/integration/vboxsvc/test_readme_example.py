"""The client library's documented example runs as written (vboxsvc/README-client.md), with
VirtualBox's defaults in a scratch world."""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_first_example_runs(world):
    with open(os.path.join(ROOT, "vboxsvc", "README-client.md")) as f:
        code = re.findall(r"```python\n(.*?)```", f.read(), re.S)[0]
    out = world.py(code, timeout=120)
    assert out.returncode == 0, out.stderr
    # each print is one string, so an event printed meanwhile cannot split it
    assert "demo 512 MB, 2 CPUs, state PoweredOff" in out.stdout, out.stdout
    assert "expected: VBOX_E_INVALID_VM_STATE The machine is not mutable (state is PoweredOff)" in out.stdout
    assert "IMachineRegisteredEvent" in out.stdout
