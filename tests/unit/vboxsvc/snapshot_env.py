"""An in-process service for snapshot/clone tests: VirtualBox over a temporary home, a fake bus
whose `post` queue the test drains (standing in for the bus thread), and recorded events."""

from __future__ import annotations

import queue
import time
import types

from vboxsvc.api.enums import AccessMode, DeviceType, LockType, StorageBus
from vboxsvc.ipc.dispatcher import ObjectTable
from vboxsvc.server.context import ctx


class FakeBus:
    def __init__(self):
        self.table = ObjectTable(b"")
        self.posted: queue.SimpleQueue = queue.SimpleQueue()

    def post(self, fn) -> None:
        self.posted.put(fn)

    def call_later(self, delay_s, fn):
        raise AssertionError("no timers expected in these tests")


class FakeEvents:
    def __init__(self):
        self.fired: list[tuple[int, dict]] = []

    def fire_internal(self, event_type, fields) -> None:
        self.fired.append((int(event_type), dict(fields)))


class Env:
    def __init__(self, tmp_path, monkeypatch):
        from vboxsvc.server.virtualbox import VirtualBox
        self.tmp = tmp_path
        monkeypatch.setenv("VBOX_USER_HOME", str(tmp_path / "home"))
        self.bus = FakeBus()
        self.events = FakeEvents()
        monkeypatch.setattr(ctx, "bus", self.bus)
        monkeypatch.setattr(ctx, "events", self.events)
        (tmp_path / "home").mkdir(mode=0o700)
        self.vbox = VirtualBox(tmp_path / "home")
        monkeypatch.setattr(ctx, "vbox", self.vbox)
        self.vbox.system_properties.default_machine_folder = str(tmp_path / "vms")
        self._client = types.SimpleNamespace(sid=b"t" * 16, data={}, pid=1, name="test", token=None)

    def wait(self, progress, timeout: float = 30.0):
        """Run posted completions (the bus thread's job) until the progress completes; return its error."""
        deadline = time.monotonic() + timeout
        while not progress.completed:
            try:
                self.bus.posted.get(timeout=0.05)()
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{progress.description} did not complete")
        return progress.error_info

    def ok(self, progress) -> None:
        err = self.wait(progress)
        assert err is None, err.text

    def session(self):
        from vboxsvc.server.session import Session
        return Session(self._client)

    def machine(self, name: str, disk_mb: int = 4, disks: int = 1):
        """A registered machine with `disks` VDIs on a SATA controller."""
        vbox = self.vbox
        m = vbox.create_machine("", name, os_type_id="Linux_64")
        m.save_settings()
        vbox.register_machine(m)
        s = self.session()
        m.lock_machine(s, LockType.Write)
        sm = s.machine
        sm.add_storage_controller("SATA", StorageBus.SATA)
        folder = vbox.find_core(name).path.parent
        for i in range(disks):
            med = vbox.create_medium("VDI", str(folder / f"{name}-{i}.vdi"), AccessMode.ReadWrite,
                                     DeviceType.HardDisk)
            self.ok(med.create_base_storage(disk_mb << 20))
            sm.attach_device("SATA", i, 0, DeviceType.HardDisk, med)
        sm.save_settings()
        s.unlock_machine()
        return vbox.find_machine(name)

    def locked(self, machine):
        s = self.session()
        machine.lock_machine(s, LockType.Shared)
        return s

    def disk_paths(self, machine) -> list[str]:
        out = []
        for c in machine._d.hardware.storage_controllers:
            for dev in c.devices:
                if dev.type == "HardDisk":
                    out.append(self.vbox.media.by_id[str(dev.medium)].location)
        return out
