"""kill -9 during saves: there is always a complete settings file under the name (and `-prev`, when
present, is complete too).

A writer process saves a machine file in a loop (each generation changes RAM size, extra data and a
large description); it is killed with SIGKILL at random moments. After every kill the file under
its name (and `-prev`, if there) must load and be internally consistent.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from settings.machine_file import MachineFile

ROOT = Path(__file__).resolve().parents[3]
TRIALS = 24

WRITER = r"""
import sys
from pathlib import Path
from settings.machine_file import MachineFile
from settings.models import MachineSettings
path = Path(sys.argv[1])
mf = MachineFile.load(path) if path.exists() else MachineFile.new(path, MachineSettings(name="crash"))
gen = int(mf.settings.extra_data.get("gen", "0"))
first = True
while True:
    gen += 1
    s = mf.settings
    s.extra_data["gen"] = str(gen)
    s.hardware.memory_mb = 128 + gen % 4096
    s.description = f"generation {gen} " * 20000
    mf.save()
    if first:
        print("ready", flush=True)
        first = False
"""


def _check_consistent(path: Path) -> int:
    s = MachineFile.load(path).settings
    gen = int(s.extra_data["gen"])
    assert s.hardware.memory_mb == 128 + gen % 4096
    assert s.description == f"generation {gen} " * 20000
    return gen


def test_kill_minus_nine_never_leaves_a_broken_file(tmp_path):
    path = tmp_path / "crash.vbox"
    prev = tmp_path / "crash.vbox-prev"
    rng = random.Random(1234)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    outcomes = {"name": 0}
    last_gen = 0
    for _ in range(TRIALS):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env,
                                cwd=str(ROOT))
        try:
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.12))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        assert path.exists(), "a save left no file under the name"
        gen = _check_consistent(path)
        outcomes["name"] += 1
        if prev.exists():
            _check_consistent(prev)
        assert gen > last_gen
        last_gen = gen
    assert sum(outcomes.values()) == TRIALS
    print("outcomes:", outcomes)
