"""Saved state and online snapshots through the real service and bus, with this test process as
the VM process: it takes the VM lock, runs a real VM (REM, a guest counting on COM1, a VDI on
AHCI) and exports an IConsole whose online-snapshot call uses vmm.savedstate, as the headless
frontend does. Checks the service's side (states, state files, diffs, .vbox) and the guest's:
the counter continues after savestate/restore and after restoring an online snapshot."""

from __future__ import annotations

import os
import time

import pytest
from lxml import etree

from frontends.headless.console_state import console_save_state
from tests.integration.snapshots.vmproc import VmProcess
from tests.unit.vmm.hm import guests
from tests.unit.vmm.test_savedstate import COUNTER_GUEST
from vboxsvc.api import AccessMode, DeviceType, LockType, MachineState, StorageBus, VBoxEventType
from vmm.savedstate import SavedStateError, _disk_holders

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(bool(guests.toolchain_missing()), reason="GNU as/ld/objcopy needed")]
NS = {"v": "http://www.virtualbox.org/"}


def counter_vm(client, machine, kernel) -> VmProcess:
    def configure(cfg):
        cfg.set("RamSize", 16 << 20)
        cfg.set("Boot/Kernel", str(kernel))
    return VmProcess(client, machine, configure)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    p = tmp_path_factory.mktemp("guest") / "counter.bin"
    p.write_bytes(guests.assemble(COUNTER_GUEST))
    return p


def make_vm(client, vbox, name):
    m = vbox.create_machine("", name, os_type_id="Linux_64")
    m.save_settings()
    vbox.register_machine(m)
    s = client.session()
    m.lock_machine(s, LockType.Write)
    s.machine.add_storage_controller("SATA", StorageBus.SATA)
    med = vbox.create_medium("VDI", os.path.join(os.path.dirname(m.settings_file_path), f"{name}.vdi"),
                             AccessMode.ReadWrite, DeviceType.HardDisk)
    p = med.create_base_storage(4 << 20, [])
    p.wait_for_completion(-1)
    assert p.result_code == 0
    s.machine.attach_device("SATA", 0, 0, DeviceType.HardDisk, med)
    s.machine.save_settings()
    s.unlock_machine()
    return m


def counts(data: bytes) -> list[int]:
    return [int(x, 16) for x in data.decode().split("\n") if len(x) == 4]


def wait_done(progress):
    progress.wait_for_completion(-1)
    assert progress.result_code == 0, (
        progress.error_info.text if progress.error_info else progress.result_code
    )


def test_savestate_discard_and_restore(client, vbox, kernel):
    m = make_vm(client, vbox, "saver")
    vm = counter_vm(client, m, kernel)
    assert vm.power_up() is False
    vm.serial.wait_lines(2)
    res = console_save_state(vm.vm, vm.session.machine)
    assert m.state == MachineState.Saved
    state_file = m.state_file_path
    assert (os.path.dirname(state_file).endswith("/saver/Snapshots")
            and os.path.getsize(state_file) == res.size)
    before = bytes(vm.serial.data)
    vm.power_down()
    mach = etree.parse(m.settings_file_path).getroot().find("v:Machine", NS)
    assert mach.get("stateFile") == "Snapshots/" + os.path.basename(state_file)

    # a corrupt state file is refused and the machine stays Saved, file and all
    good = open(state_file, "rb").read()
    with open(state_file, "r+b") as f:
        f.seek(len(good) // 2)
        f.write(b"\xff" * 64)
    vm = counter_vm(client, m, kernel)
    with pytest.raises(SavedStateError):
        vm.power_up()
    assert m.state == MachineState.Saved and os.path.exists(state_file)
    vm.abandon()
    assert m.state == MachineState.Saved

    # the intact file restores and the guest counts on from where it stopped
    with open(state_file, "wb") as f:
        f.write(good)
    vm = counter_vm(client, m, kernel)
    assert vm.power_up() is True
    vm.serial.wait_lines(2)
    assert m.state == MachineState.Running and not os.path.exists(state_file), "a restored state is consumed"
    joined = counts(before + bytes(vm.serial.data))
    assert joined == list(range(len(joined)))
    assert console_save_state(vm.vm, vm.session.machine).size > 0
    vm.power_down()
    saved = m.state_file_path
    s = client.session()
    m.lock_machine(s, LockType.Write)
    s.machine.discard_saved_state(True)
    s.unlock_machine()
    assert m.state == MachineState.PoweredOff and not os.path.exists(saved)


def test_online_snapshot_and_restore(client, vbox, kernel):
    m = make_vm(client, vbox, "live")
    base = m.get_medium("SATA", 0, 0).location
    listener = vbox.event_source.create_listener()
    vbox.event_source.register_listener(listener, [VBoxEventType.SnapshotEvent], False)
    vm = counter_vm(client, m, kernel)
    vm.power_up()
    vm.serial.wait_lines(2)
    shared = client.session()
    m.lock_machine(shared, LockType.Shared)
    sid, progress = shared.machine.take_snapshot("running", "taken online", True)
    wait_done(progress)
    shared.unlock_machine()
    ev = vbox.event_source.get_event(listener, 5000)
    assert ev.type == VBoxEventType.OnSnapshotTaken and ev.snapshot_id == sid
    assert m.state == MachineState.Running
    snap = m.find_snapshot("running")
    assert snap.online and os.path.isfile(snap.machine.state_file_path)
    cur = m.get_medium("SATA", 0, 0)
    assert cur.parent.location == base and os.path.dirname(cur.location).endswith("/live/Snapshots")
    (_pc, holder), = list(_disk_holders(vm.vm))
    assert holder.image.path == cur.location, "the running VM writes to the new differencing image"
    at_snapshot = counts(vm.console.output_at_snapshot)
    vm.serial.wait_lines(len(counts(bytes(vm.serial.data))) + 3)    # it keeps running after the snapshot
    vm.power_down()
    assert m.state == MachineState.PoweredOff

    s = client.session()
    m.lock_machine(s, LockType.Write)
    wait_done(s.machine.restore_snapshot(s.machine.find_snapshot(sid)))
    s.unlock_machine()
    assert m.state == MachineState.Saved and m.current_snapshot.id == sid
    assert m.state_file_path != snap.machine.state_file_path
    vm = counter_vm(client, m, kernel)
    assert vm.power_up() is True
    time.sleep(0.2)
    vm.serial.wait_lines(2)
    resumed = counts(bytes(vm.serial.data).split(b"\n", 1)[1])
    assert resumed[0] in (at_snapshot[-1] + 1, at_snapshot[-1] + 2), (at_snapshot[-3:], resumed[:3])
    vm.power_down()
    assert m.current_state_modified is True     # the machine ran after the restore


def test_delete_snapshots_of_a_running_machine(client, vbox, kernel):
    from vmm.storage import open_image
    m = make_vm(client, vbox, "livedel")
    base = m.get_medium("SATA", 0, 0).location
    vm = counter_vm(client, m, kernel)
    vm.power_up()
    vm.serial.wait_lines(1)

    def disk():
        (_pc, holder), = list(_disk_holders(vm.vm))
        return holder.image

    def snapshot(name):
        shared = client.session()
        m.lock_machine(shared, LockType.Shared)
        sid, progress = shared.machine.take_snapshot(name, "", True)
        wait_done(progress)
        shared.unlock_machine()

    def delete(name):
        shared = client.session()
        m.lock_machine(shared, LockType.Shared)
        wait_done(shared.machine.delete_snapshot(shared.machine.find_snapshot(name).id))
        shared.unlock_machine()

    disk().write_at(0, b"A" * 512)
    snapshot("a")
    disk().write_at(512, b"B" * 512)
    snapshot("b")
    disk().write_at(1024, b"C" * 512)
    b_disk = m.find_snapshot("b").machine.get_medium("SATA", 0, 0).location
    delete("b")          # a differencing disk merged forward into the one the VM writes to
    assert m.state == MachineState.Running and m.snapshot_count == 1
    assert not os.path.exists(b_disk)
    assert disk().read_at(0, 1536) == b"A" * 512 + b"B" * 512 + b"C" * 512
    delete("a")          # the VM's disk merged back into the base; the VM continues on the base
    assert m.snapshot_count == 0 and m.get_medium("SATA", 0, 0).location == base
    assert disk().path == base
    disk().write_at(2048, b"D" * 512)
    n = vm.serial.data.count(b"\n")
    vm.serial.wait_lines(n + 2)                      # the guest ran on through both deletions
    vm.power_down()
    img = open_image(base, read_only=True)
    try:
        assert img.read_at(0, 2560) == b"A" * 512 + b"B" * 512 + b"C" * 512 + bytes(512) + b"D" * 512
    finally:
        img.close()
    assert os.listdir(os.path.join(os.path.dirname(base), "Snapshots")) == []
