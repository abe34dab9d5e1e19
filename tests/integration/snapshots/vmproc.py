"""This test process as a machine's VM process: it takes the VM lock through the real service,
builds a real VM (REM) with the machine's disks, exports an IConsole for the service's online
snapshot call, and reports states as the headless frontend does, using vmm.savedstate."""

from __future__ import annotations

import threading
import time

from frontends.headless.console_state import console_restore_if_saved
from vboxsvc.api import LockType, MachineState
from vmm.cfgm import CfgNode
from vmm.savedstate import console_merge_online, console_take_snapshot
from vmm.serial.backends import SerialBackend
from vmm.vm import Machine


class Serial(SerialBackend):
    """COM1 of the VM: output collected, input queued; `run` drives a guest shell."""

    def __init__(self):
        super().__init__()
        self.data = bytearray()
        self.cond = threading.Condition()
        self._in = bytearray()
        self._seq = 0

    # --- backend ---------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        with self.cond:
            self.data += data
            self.cond.notify_all()

    @property
    def has_input(self) -> bool:
        return bool(self._in)

    def read(self, max_bytes: int) -> bytes:
        with self.cond:
            out = bytes(self._in[:max_bytes])
            del self._in[:max_bytes]
        return out

    def send(self, text: str) -> None:
        with self.cond:
            self._in += text.encode()
        if self._notify is not None:
            self._notify()

    # --- test side --------------------------------------------------------------------------
    def wait_lines(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.data.count(b"\n") < n:
                left = deadline - time.monotonic()
                assert left > 0, f"guest printed only {bytes(self.data[-500:])!r}"
                self.cond.wait(left)

    def wait_for(self, text: str, timeout: float, start: int = 0) -> int:
        needle = text.encode()
        deadline = time.monotonic() + timeout
        with self.cond:
            while (i := self.data.find(needle, start)) < 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {text!r} within {timeout}s: {bytes(self.data[-1500:])!r}")
                self.cond.wait(left)
            return i + len(needle)

    def run(self, command: str, timeout: float = 300) -> str:
        """Run a shell command in the guest; its output (asserting exit status 0)."""
        self._seq += 1
        n = self._seq
        with self.cond:
            start = len(self.data)
        self.send(f"echo __ST''ART_{n}__; {command}; echo __DO''NE_{n}__ $?\r")
        begin = self.wait_for(f"__START_{n}__\r\n", timeout, start)
        end = self.wait_for(f"__DONE_{n}__ ", timeout, begin)
        self.wait_for("\n", timeout, end)
        with self.cond:
            out = self.data[begin:end - len(f"__DONE_{n}__ ")].decode(errors="replace")
            status = int(self.data[end:].split()[0])
        assert status == 0, f"guest command failed ({status}): {command}\n{out}"
        return out.replace("\r\n", "\n")


class Console:
    """The VM process's IConsole, reduced to what the service calls for online snapshots."""

    __interface__ = "IConsole"

    def __init__(self, vm, serial):
        self.vm, self.serial, self.output_at_snapshot = vm, serial, b""

    def take_snapshot_online(self, state_file, disks, pause=True):
        self.vm.pause().result()
        self.output_at_snapshot = bytes(self.serial.data)
        try:
            return console_take_snapshot(self.vm, state_file, disks, pause).size
        finally:
            self.vm.resume().result()

    def merge_snapshot_online(self, jobs, known):
        return console_merge_online(self.vm, jobs, known)


def chain_resolver(medium):
    """Parent lookup through the media registry (the API), as a VM builder must do for linked clones
    whose parents live in another machine's folder."""
    where = {}
    m = medium.parent
    while m is not None:
        where[m.id] = m.location
        m = m.parent
    return where


class VmProcess:
    def __init__(self, client, machine, configure, monkeypatch=None):
        self.client = client
        self.session = client.session()
        machine.lock_machine(self.session, LockType.VM)
        sm = self.session.machine
        medium = sm.get_medium("SATA", 0, 0)
        if monkeypatch is not None:
            import vmm.storage.opener as opener
            known, fallback = chain_resolver(medium), opener.default_parent_resolver

            def resolver(image_path):
                default = fallback(image_path)
                return lambda uid: known[uid] if uid in known else default(uid)
            monkeypatch.setattr(opener, "default_parent_resolver", resolver)
        cfg = CfgNode()
        cfg.set("Engine", "rem")
        cfg.set("Devices/serial/0/Enabled", True)
        cfg.set("Devices/storage/ahci/Type", "IntelAhci")
        cfg.set("Devices/storage/ahci/Name", "SATA")
        cfg.set("Devices/storage/ahci/Attachments/0/Port", 0)
        cfg.set("Devices/storage/ahci/Attachments/0/Path", medium.location)
        configure(cfg)
        self.serial = Serial()
        restoring = sm.state in (MachineState.Saved, MachineState.AbortedSaved)
        self.vm = Machine(cfg, serial_backends={0: self.serial}, restoring=restoring)
        self.console = Console(self.vm, self.serial)
        self.session.register_console(client.export(self.console, "IConsole"))

    def power_up(self) -> bool:
        sm = self.session.machine
        restored = console_restore_if_saved(self.vm, sm)
        if not restored:
            sm.update_state(MachineState.Starting)
        self.vm.start()
        sm.update_state(MachineState.Running)
        return restored

    def power_down(self) -> None:
        sm = self.session.machine
        saved = sm.state == MachineState.Saved
        if not saved:
            sm.update_state(MachineState.Stopping)
        self.vm.power_off()
        self.vm.wait(10)
        if not saved:
            sm.update_state(MachineState.PoweredOff)
        self.vm.close()
        self.session.unlock_machine()

    def abandon(self) -> None:
        """The VM was never started (a refused restore): drop it and the lock."""
        self.vm.close()
        self.session.unlock_machine()
