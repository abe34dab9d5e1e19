"""Fault injection as a user meets it: a scratch home with its own service, CLI calls whose service
dies (os._exit, like kill -9) at a named file-system step, and checks that the next service finds
every registration and every file loadable, holding the old or the new state.

The steps come from settings/crashpoint.py: an operation is first run with a trace to list the
steps it passes, then once per step with the service set to die there. Used by the test suite
(every step, few operations) and by scripts/fault_trials.py (many random trials).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.world import pid_alive

ROOT = Path(__file__).resolve().parents[3]
_LIST = re.compile(r'^"(.*)" \{([0-9a-f-]{36})\}$')


class Home:
    """A user home with VirtualBox's files and a service started on demand by the CLI."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.vbox_home = self.root / ".config" / "VirtualBox"
        self.run = self.root / "run"
        self.env = dict(os.environ, HOME=str(self.root), VBOX_USER_HOME=str(self.vbox_home),
                        VBOXPY_RUNTIME_DIR=str(self.run), PYTHONPATH=str(ROOT))
        for k in ("XDG_CONFIG_HOME", "VBOXPY_CRASH_AT", "VBOXPY_CRASH_TRACE"):
            self.env.pop(k, None)

    def cli(self, *args: str, crash_at: str | None = None, trace: Path | None = None,
            check: int | None = None) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if crash_at:
            env["VBOXPY_CRASH_AT"] = crash_at
        if trace:
            env["VBOXPY_CRASH_TRACE"] = str(trace)
        if crash_at or trace:
            self.stop_service()         # the next service starts with the crash point armed
        p = subprocess.run([sys.executable, "-m", "frontends.vboxmanage.main", *args], cwd=str(self.root),
                           env=env, capture_output=True, text=True, timeout=120)
        if crash_at or trace:
            self.stop_service()
        if check is not None:
            assert p.returncode == check, (args, p.returncode, p.stdout, p.stderr)
        return p

    def service_pids(self) -> list[int]:
        pids = []
        for pid_file in self.run.glob("vboxsvc*.pid"):
            try:
                pids.append(int(pid_file.read_text().split()[0]))
            except (ValueError, IndexError, OSError):
                continue
        return pids

    def kill_service(self) -> None:
        """kill -9 of this home's service, wherever it is."""
        for pid in self.service_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop_service(self) -> None:
        for pid in self.service_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(1000):
                if not pid_alive(pid):
                    break
                time.sleep(0.005)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def machines(self) -> dict[str, str]:
        """uuid -> name of every registered machine; fails on an inaccessible one."""
        p = self.cli("list", "vms", check=0)
        out = {}
        for line in p.stdout.splitlines():
            m = _LIST.match(line.strip())
            assert m, f"unexpected line in list vms: {line!r}"
            assert m.group(1) != "<inaccessible>", f"machine {m.group(2)} is inaccessible"
            out[m.group(2)] = m.group(1)
        return out

    def info(self, vm: str) -> dict[str, str]:
        p = self.cli("showvminfo", vm, "--machinereadable", check=0)
        pairs = {}
        for line in p.stdout.splitlines():
            k, _, v = line.partition("=")
            pairs[k.strip('"')] = v.strip('"')
        return pairs


def steps_of(trace: Path) -> list[str]:
    """`name#k` for every step in a trace, k counting repeats of the same name."""
    seen: dict[str, int] = {}
    out = []
    for name in trace.read_text().split():
        seen[name] = seen.get(name, 0) + 1
        out.append(f"{name}#{seen[name]}")
    return out


# ---- operations: each runs one command (crashing at `at`) and checks what the next service sees ----

def op_createvm(home: Home, i: int, at: str | None, trace: Path | None = None) -> None:
    before = home.machines()
    name = f"new{i}"
    home.cli("createvm", "--name", name, "--register", crash_at=at, trace=trace)
    after = home.machines()
    assert before.items() <= after.items(), f"lost a registration: {before} -> {after}"
    extra = set(after) - set(before)
    assert len(extra) <= 1 and all(after[u] == name for u in extra), (before, after)


def op_rename(home: Home, i: int, at: str | None, trace: Path | None = None) -> None:
    before = home.machines()
    if not before:
        home.cli("createvm", "--name", f"ren{i}", "--register", check=0)
        before = home.machines()
    uid = sorted(before)[0]
    old, new = before[uid], f"ren{i}x"
    home.cli("modifyvm", uid, "--name", new, crash_at=at, trace=trace)
    after = home.machines()
    assert set(after) == set(before), f"registrations changed: {before} -> {after}"
    assert after[uid] in (old, new), (old, new, after[uid])
    cfg = Path(home.info(uid)["CfgFile"])
    assert cfg.exists(), cfg


def op_snapshot(home: Home, i: int, at: str | None, trace: Path | None = None) -> None:
    before = home.machines()
    if not before:
        home.cli("createvm", "--name", f"snap{i}", "--register", check=0)
        before = home.machines()
    uid = sorted(before)[0]
    count = sum(1 for k in home.info(uid) if k.startswith("SnapshotName"))
    home.cli("snapshot", uid, "take", f"s{i}", crash_at=at, trace=trace)
    after = home.machines()
    assert set(after) == set(before), f"registrations changed: {before} -> {after}"
    now = sum(1 for k in home.info(uid) if k.startswith("SnapshotName"))
    assert now in (count, count + 1), (count, now)


def op_clone(home: Home, i: int, at: str | None, trace: Path | None = None) -> None:
    before = home.machines()
    if not before:
        home.cli("createvm", "--name", f"src{i}", "--register", check=0)
        before = home.machines()
    src = sorted(before)[0]
    home.cli("clonevm", src, "--name", f"clone{i}", "--register", crash_at=at, trace=trace)
    after = home.machines()
    assert before.items() <= after.items(), f"lost a registration: {before} -> {after}"
    assert len(set(after) - set(before)) <= 1


def op_unregister(home: Home, i: int, at: str | None, trace: Path | None = None) -> None:
    home.cli("createvm", "--name", f"gone{i}", "--register", check=0)
    before = home.machines()
    victim = next(u for u, n in before.items() if n == f"gone{i}")
    home.cli("unregistervm", victim, "--delete", crash_at=at, trace=trace)
    after = home.machines()
    assert set(before) - {victim} <= set(after), f"lost a registration: {before} -> {after}"
    if victim in after:         # still registered: it must load (machines() checked that)
        assert Path(home.info(victim)["CfgFile"]).exists()


def op_snapshot_delete(home: Home, i: int, at: str | None, trace: Path | None = None) -> None:
    name = f"sd{i}"
    home.cli("createvm", "--name", name, "--register", check=0)
    disk = str(home.root / f"{name}.vdi")
    home.cli("createmedium", "disk", "--filename", disk, "--size", "4", check=0)
    home.cli("storagectl", name, "--name", "SATA", "--add", "sata", check=0)
    home.cli("storageattach", name, "--storagectl", "SATA", "--port", "0", "--type", "hdd", "--medium", disk,
             check=0)
    home.cli("snapshot", name, "take", "one", check=0)
    before = home.machines()
    home.cli("snapshot", name, "delete", "one", crash_at=at, trace=trace)
    after = home.machines()
    assert set(after) == set(before), f"registrations changed: {before} -> {after}"
    info = home.info(name)
    assert sum(1 for k in info if k.startswith("SnapshotName")) in (0, 1), info
    disks = [v for k, v in info.items() if k.startswith("SATA-0-0")]
    assert disks and disks[0] != "none", info
    p = home.cli("showmediuminfo", disks[0])
    assert p.returncode == 0 and "inaccessible" not in p.stdout.lower(), p.stdout + p.stderr


OPERATIONS = {"createvm": op_createvm, "rename": op_rename, "snapshot": op_snapshot, "clone": op_clone,
              "unregister": op_unregister, "snapshot-delete": op_snapshot_delete}


def crash_points(home: Home, op: str, tmp: Path) -> list[str]:
    """Run `op` once with a trace and return its steps."""
    trace = tmp / f"trace-{op}"
    trace.unlink(missing_ok=True)
    OPERATIONS[op](home, 0, None, trace)
    return steps_of(trace) if trace.exists() else []
