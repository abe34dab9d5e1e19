"""Stall hunt: tickless REM guests under host load, each watched for a console that stops answering.

    python tests/performance/stall_rem.py [--vms 2] [--rounds 60] [--busy 2] [--seed 1] [--vm-arg=--apic=on]

Boots `--vms` guests at once (vmm.run, REM) next to `--busy` host busy loops, all at nice 10, and
drives each through rounds of serial output floods, typed input lines, short sleeps (a tickless
guest reprograms its one-shot timer and halts for each) and a user-mode spinner.  A command that
does not finish within --timeout seconds is a stall: the VM process's state is dumped (SIGUSR1,
into the console log) and the run counts it.  Prints stalls per runs; exits 1 if any.  Not part
of the test suite.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration.vm.guest_console import READY_MARKER, GuestConsole  # noqa: E402
from vmm.guest.builder import build, guest_files  # noqa: E402

LINE_MAX = 700          # busybox's line editor keeps at most 1024 characters of a typed line


def one_vm(tag: str, args, files, work: Path, results: dict) -> None:
    rnd = random.Random(f"{args.seed}-{tag}")
    log = work / f"console-{tag}.log"
    argv = ["nice", "-n", "10", sys.executable, "-m", "vmm.run", "--kernel", str(files.vmlinux),
            "--initrd", str(files.initrd), "--append", args.append, "--memory", "256", "--engine", "rem",
            *args.vm_arg]
    con = GuestConsole(argv, env=dict(os.environ, PYTHONPATH=str(ROOT)), log_path=str(log))
    t0 = time.monotonic()
    done = 0
    try:
        con.wait_for(READY_MARKER, 900)
        con.run("dmesg -n 1", args.timeout)
        for _ in range(args.rounds):
            n = rnd.randint(1000, 6000)
            status, out = con.run(f"seq 1 {n} | tail -1; seq 1 {n // 4}", args.timeout)
            assert status == 0 and out.startswith(f"{n}\n"), out[:200]
            data = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                           for _ in range(rnd.randint(100, LINE_MAX)))
            status, out = con.run(f"X={data}; echo ${{#X}}", args.timeout)
            assert status == 0 and out.strip().endswith(str(len(data))), out[-200:]
            k = rnd.randint(20, 80)
            status, out = con.run(f"i=0; while [ $i -lt {k} ]; do usleep {rnd.randint(200, 5000)}; "
                                  f"echo -n .; "
                                  f"i=$((i+1)); done; echo; echo k=$i", args.timeout)
            assert status == 0 and f"k={k}" in out, out[-200:]
            status, out = con.run("(while :; do :; done) & P=$!; seq 1 500 | tail -1; sleep 0.1; kill $P; "
                                  "echo killed", args.timeout)
            assert status == 0 and "killed" in out, out[-200:]
            done += 1
        results[tag] = (done, None)
        print(f"[{tag}] {done} rounds ok ({time.monotonic() - t0:.0f} s)", flush=True)
    except (TimeoutError, AssertionError, RuntimeError) as e:
        dump_state(con)
        results[tag] = (done, f"{type(e).__name__} after {done} rounds ({time.monotonic() - t0:.0f} s)")
        print(f"[{tag}] STALL after {done} rounds ({time.monotonic() - t0:.0f} s); console log {log}",
              flush=True)
    finally:
        if con.proc.poll() is None:
            con.proc.kill()
        con.close()


def dump_state(con: GuestConsole) -> None:
    """The VM process writes its live state into the console log on SIGUSR1 (vmm.run)."""
    if con.proc.poll() is None:
        con.proc.send_signal(signal.SIGUSR1)
        time.sleep(3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--busy", type=int, default=2, help="host busy loops beside the guests")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=120, help="seconds a command may take")
    ap.add_argument("--append", default="console=ttyS0", help="guest kernel command line")
    ap.add_argument("--vm-arg", action="append", default=[], help="extra vmm.run argument (repeatable)")
    args = ap.parse_args()
    files = guest_files() if guest_files().exist() else build(log=lambda *_: None)
    work = Path(tempfile.mkdtemp(prefix="stall-rem-"))
    busy = [subprocess.Popen(["nice", "-n", "10", sys.executable, "-c", "while True: pass"])
            for _ in range(args.busy)]
    results: dict[str, tuple[int, str | None]] = {}
    try:
        threads = [threading.Thread(target=one_vm, args=(f"vm{i}", args, files, work, results))
                   for i in range(args.vms)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for p in busy:
            p.kill()
            p.wait()
    stalls = [tag for tag, (_, why) in results.items() if why is not None]
    rounds = sum(n for n, _ in results.values())
    print(f"{len(stalls)} stalls in {len(results)} runs ({rounds} rounds done); logs in {work}")
    return 1 if stalls else 0


if __name__ == "__main__":
    sys.exit(main())
