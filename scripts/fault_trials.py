#!/usr/bin/env python3
"""Long fault-injection runs (not part of the test suite): many trials of each kind, counting losses.

    python3 scripts/fault_trials.py                      # 1000 trials of every kind
    python3 scripts/fault_trials.py --trials 50 --kinds settings-steps,image-steps

Kinds:
  settings-steps   the service dies at a step of createvm/rename/snapshot/clone/unregister (cycling
                   through every step of every operation); the next service must lose nothing
  settings-random  kill -9 of the service at a random moment while a client saves settings in a loop
  image-steps      a writer dies at a step of every VDI and sparse VMDK metadata path (cycling
                   through all of them)
  vdi-random       kill -9 of a writer that allocates, overwrites and discards at random moments
  fuzz             fuzzed, correctly signed bus frames (100k per trial by default): no traceback
                   in VBoxSVC.log, the service's memory back near its start
  clients          2000 clients connect at once: each is answered or refused, the service lives

Each kind prints `<kind>: <trials> trials, <losses> losses` and the first few failures.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = str(ROOT)


def settings_steps(n: int, work: Path) -> list[str]:
    from tests.integration.faults.harness import OPERATIONS, Home, crash_points
    home = Home(work / "home")
    home.cli("setproperty", "machinefolder", str(home.root / "VirtualBox VMs"), check=0)
    home.cli("createvm", "--name", "keep", "--register", check=0)
    plan = []
    for op in sorted(OPERATIONS):
        plan += [(op, at) for at in crash_points(home, op, work)]
    failures = []
    try:
        for i in range(n):
            op, at = plan[i % len(plan)]
            try:
                OPERATIONS[op](home, 1000 + i, at)
            except AssertionError as e:
                failures.append(f"{op} at {at}: {e}")
    finally:
        home.stop_service()
    return failures


SAVER = r"""
import sys
from vboxsvc.ipc.client import connect
c = connect()
vbox = c.virtualbox
m = vbox.find_machine(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    i += 1
    vbox.set_extra_data(f"k{i % 50}", str(i))
    m.set_extra_data("gen", str(i))
"""


def settings_random(n: int, work: Path) -> list[str]:
    from tests.integration.faults.harness import Home
    home = Home(work / "home")
    home.cli("setproperty", "machinefolder", str(home.root / "VirtualBox VMs"), check=0)
    for k in range(3):
        home.cli("createvm", "--name", f"m{k}", "--register", check=0)
    expected = home.machines()
    rnd = random.Random(7)
    failures = []
    try:
        for i in range(n):
            p = subprocess.Popen([sys.executable, "-c", SAVER, "m0"], env=home.env, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
            p.stdout.readline()
            time.sleep(rnd.uniform(0.0, 0.3))
            home.kill_service()
            p.kill()
            p.wait()
            p.stdout.close()
            try:
                now = home.machines()
                if now != expected:
                    failures.append(f"trial {i}: registrations {expected} -> {now}")
                    expected = now
            except AssertionError as e:
                failures.append(f"trial {i}: {e}")
    finally:
        home.stop_service()
    return failures


def image_steps(n: int, work: Path) -> list[str]:
    from tests.integration.faults.image_ops import OPS, Trial
    trials = {op: Trial(work / op, op) for op in OPS}
    plan = [(op, at) for op in OPS for at in trials[op].steps()]
    failures = []
    for i in range(n):
        op, at = plan[i % len(plan)]
        problem = trials[op].crash_at(at)
        if problem:
            failures.append(f"{op}: {problem}")
    return failures


def vdi_random(n: int, work: Path) -> list[str]:
    from tests.integration.storage import test_crash_safety as t
    from vmm.storage import create_vdi, open_image
    rnd = random.Random(11)
    failures = []
    for i in range(n):
        path = str(work / f"r{i % 4}.vdi")
        if os.path.exists(path):
            os.unlink(path)
        create_vdi(path, t.SIZE).close()
        seed = 5000 + i
        try:
            last = t._run_and_kill(path, seed, rnd.uniform(0.05, 0.6))
            t._verify(path, bytearray(t.SIZE), seed, last)
            open_image(path).close()
            if shutil.which("qemu-img"):
                r = subprocess.run(["qemu-img", "check", "-f", "vdi", path], capture_output=True, text=True)
                if r.returncode != 0:
                    failures.append(f"trial {i}: qemu-img check: {r.stdout}{r.stderr}")
                    continue
            t._verify(path, bytearray(t.SIZE), seed, last)
        except AssertionError as e:
            failures.append(f"trial {i}: {e}")
    return failures


def _with_service(work: Path, extra_env: dict | None = None):
    from tests.integration.vboxsvc.conftest import make_env
    env = make_env()
    os.environ.update(VBOX_USER_HOME=str(env.home), VBOXPY_RUNTIME_DIR=str(env.run),
                      VBOXSVC_SHUTDOWN_DELAY_MS="2000", **(extra_env or {}))
    from vboxsvc.ipc.client import connect
    return env, connect()


def fuzz(n: int, work: Path, frames: int = 100_000) -> list[str]:
    from tests.integration.vboxsvc.conftest import stop_service
    from tests.integration.vboxsvc.test_bus_faults import VERSION, log_text, rss_kb
    from tests.integration.vboxsvc.test_bus_faults import fuzz as send
    from vboxsvc.ipc import paths
    env, client = _with_service(work)
    failures = []
    try:
        key = paths.load_key(create=False)
        pid = client.service_pid
        send(key, paths.endpoint(), 1000, 0)
        start = rss_kb(pid)
        for i in range(n):
            send(key, paths.endpoint(), frames, i + 1)
            if client.virtualbox.version != VERSION:
                failures.append(f"trial {i}: the service stopped answering")
            grown = rss_kb(pid) - start
            if grown > 20 * 1024:
                failures.append(f"trial {i}: the service grew by {grown} KiB")
            if "Traceback" in log_text(env):
                failures.append(f"trial {i}: a traceback in VBoxSVC.log")
                break
    finally:
        pid = client.service_pid
        client.close()
        stop_service(pid)
    return failures


def clients(n: int, work: Path) -> list[str]:
    import pytest

    from tests.integration.vboxsvc import test_bus_faults as t
    from tests.integration.vboxsvc.conftest import stop_service
    env, client = _with_service(work, {"VBOXPY_MAX_CLIENTS": str(t.CAP)})
    failures = []
    try:
        for i in range(n):
            try:
                t.test_thousands_of_clients_at_once_are_answered_or_refused(client, env)
            except AssertionError as e:
                failures.append(f"trial {i}: {e}")
            except pytest.skip.Exception as e:
                failures.append(f"skipped: {e}")
                break
            # the refused and accepted sessions of this round leave when their pid (ours) is
            # checked: they stay connected until then, so later rounds see a full service
    finally:
        pid = client.service_pid
        client.close()
        stop_service(pid)
    return failures


KINDS = {"settings-steps": settings_steps, "settings-random": settings_random, "image-steps": image_steps,
         "vdi-random": vdi_random, "fuzz": fuzz, "clients": clients}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--fuzz-frames", type=int, default=100_000, help="frames per fuzz trial")
    args = ap.parse_args()
    total = 0
    for kind in args.kinds.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"fault-{kind}-", dir="/tmp"))
        trials = args.trials
        t0 = time.monotonic()
        try:
            if kind == "fuzz":
                trials = max(1, args.trials // 100)     # 1000 -> 10 rounds of 100k frames
                failures = fuzz(trials, work, args.fuzz_frames)
            elif kind == "clients":
                trials = max(1, args.trials // 100)
                failures = clients(trials, work)
            else:
                failures = KINDS[kind](trials, work)
        except Exception:
            failures = [f"harness error: {traceback.format_exc()}"]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        total += len(failures)
        print(f"{kind}: {trials} trials, {len(failures)} losses ({time.monotonic() - t0:.0f} s)", flush=True)
        for f in failures[:5]:
            print(f"  {f}", flush=True)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
