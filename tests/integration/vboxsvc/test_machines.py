"""IVirtualBox / IMachine / ISession over the real bus against a real service."""

from __future__ import annotations

import os
import uuid

import pytest

from settings.machine_file import MachineFile
from settings.main_file import MainFile
from vboxsvc.api import (
    CleanupMode,
    CPUPropertyTypeX86,
    DeviceType,
    FirmwareType,
    HWVirtExPropertyType,
    LockType,
    MachineState,
    NetworkAdapterType,
    NetworkAttachmentType,
    ParavirtProvider,
    PortMode,
    SessionState,
    SessionType,
    StorageBus,
    StorageControllerType,
    VBoxError,
    identity,
)
from vboxsvc.api import errors as rc
from vboxsvc.ipc.vmlock import VmLock


def test_virtualbox_basics(vbox, svc_env):
    assert vbox.version == identity.current().version
    assert vbox.home_folder == str(svc_env.home)
    assert vbox.settings_file_path == str(svc_env.home / "VirtualBox.xml")
    assert os.path.exists(vbox.settings_file_path)
    assert vbox.api_version == identity.current().api_version
    sp = vbox.system_properties
    assert sp.default_machine_folder == str(svc_env.vms)
    assert sp.max_guest_cpu_count == 64
    assert sp.get_max_port_count_for_storage_bus(StorageBus.SATA) == 30
    ids = [t.id for t in vbox.guest_os_types]
    for must in ("Linux_64", "Debian_64", "Ubuntu_64", "Windows10_64", "Other"):
        assert must in ids
    assert vbox.get_guest_os_type("debian_64").id == "Debian_64"
    with pytest.raises(VBoxError) as e:
        vbox.get_guest_os_type("NoSuchOS")
    assert e.value.result_code == rc.E_INVALIDARG


def test_system_property_persisted(vbox, svc_env):
    sp = vbox.system_properties
    with pytest.raises(VBoxError) as e:
        sp.default_machine_folder = "relative/dir"
    assert "not fully qualified" in e.value.text
    sp.log_history_count = 5
    assert MainFile.load(svc_env.home / "VirtualBox.xml").settings.system_properties.log_history_count == 5
    sp.log_history_count = 3


def test_create_register_find(vbox, svc_env):
    m = vbox.create_machine("", "alpha", os_type_id="Debian_64")
    path = m.settings_file_path
    assert path == str(svc_env.vms / "alpha" / "alpha.vbox")
    assert vbox.compose_machine_filename("alpha", "/", "", "") == path
    assert m.memory_size == 128 and m.cpu_count == 1 and m.os_type_id == "Debian_64"
    nic = m.get_network_adapter(0)
    assert nic.enabled and nic.attachment_type == NetworkAttachmentType.NAT
    assert nic.adapter_type == NetworkAdapterType.I82540EM
    assert nic.mac_address.startswith("080027") and len(nic.mac_address) == 12
    assert not m.get_network_adapter(1).enabled
    m.memory_size = 300  # a machine not yet registered is changed directly
    assert not os.path.exists(path)
    m.save_settings()
    assert os.path.exists(path)
    vbox.register_machine(m)
    assert m.id in [x.id for x in vbox.machines]
    assert vbox.find_machine("alpha").id == m.id
    assert vbox.find_machine(m.id).name == "alpha"
    assert vbox.find_machine("{" + m.id.upper() + "}").name == "alpha"
    assert vbox.find_machine(path).name == "alpha"
    assert MachineFile.load(path).settings.hardware.memory_mb == 300
    entries = MainFile.load(svc_env.home / "VirtualBox.xml").settings.machine_registry
    assert str(m.id) in [str(e.uuid) for e in entries]
    with pytest.raises(VBoxError) as e:
        vbox.find_machine("nonexistent")
    assert e.value.result_code == rc.VBOX_E_OBJECT_NOT_FOUND
    assert e.value.text == "Could not find a registered machine named 'nonexistent'"
    u = str(uuid.uuid4())
    with pytest.raises(VBoxError) as e:
        vbox.find_machine(u)
    assert e.value.text == f"Could not find a registered machine with UUID {{{u}}}"
    with pytest.raises(VBoxError) as e:
        vbox.create_machine("", "alpha")
    assert e.value.result_code == rc.VBOX_E_FILE_ERROR
    assert e.value.text == f"Machine settings file '{path}' already exists"


def test_register_duplicate_uuid(vbox, new_vm, svc_env):
    m = new_vm("dup-src")
    other = vbox.create_machine(str(svc_env.vms / "dupe" / "dupe.vbox"), "dupe", flags=f"UUID={m.id}")
    with pytest.raises(VBoxError) as e:
        vbox.register_machine(other)
    assert e.value.result_code == rc.E_INVALIDARG
    assert e.value.text == f"Registered machine with UUID {{{m.id}}} ('dup-src') already exists"


def test_registered_machine_is_immutable(new_vm):
    m = new_vm()
    with pytest.raises(VBoxError) as e:
        m.memory_size = 512
    assert e.value.result_code == rc.VBOX_E_INVALID_VM_STATE
    assert e.value.text == "The machine is not mutable (state is PoweredOff)"
    assert e.value.interface == "IMachine"
    with pytest.raises(VBoxError) as e:
        m.set_extra_data("k", "v")
    assert e.value.text == "Cannot set extradata for an immutable machine"


def test_write_lock_save_and_rollback(client, new_vm):
    m = new_vm()
    s = client.session()
    assert s.state == SessionState.Unlocked and s.machine is None
    m.lock_machine(s, LockType.Write)
    assert s.state == SessionState.Locked and s.type == SessionType.WriteLock
    assert m.session_state == SessionState.Locked
    sm = s.machine
    sm.memory_size = 1024
    sm.cpu_count = 2
    sm.description = "saved"
    assert sm.settings_modified
    assert m.memory_size == 128  # the registered machine shows committed settings only
    sm.save_settings()
    assert not sm.settings_modified
    assert m.memory_size == 1024
    assert MachineFile.load(m.settings_file_path).settings.hardware.cpu_count == 2
    sm.memory_size = 2048  # not saved: rolled back by unlock
    s.unlock_machine()
    assert m.memory_size == 1024 and m.session_state == SessionState.Unlocked
    with pytest.raises(VBoxError) as e:
        s.unlock_machine()
    assert e.value.result_code == rc.VBOX_E_INVALID_SESSION_STATE
    with pytest.raises(VBoxError):  # the old session machine is gone
        sm.memory_size  # noqa: B018


def test_setter_validation(client, new_vm):
    m = new_vm()
    s = client.session()
    m.lock_machine(s, LockType.Write)
    sm = s.machine
    try:
        with pytest.raises(VBoxError) as e:
            sm.memory_size = 1
        assert e.value.text == "Invalid RAM size: 1 MB (must be in range [4, 2097152] MB)"
        with pytest.raises(VBoxError) as e:
            sm.cpu_count = 65
        assert e.value.result_code == rc.E_INVALIDARG
        with pytest.raises(VBoxError) as e:
            sm.cpu_count = "two"
        assert e.value.result_code == rc.E_INVALIDARG
        with pytest.raises(VBoxError):
            sm.os_type_id = "Bogus"
        with pytest.raises(AttributeError):
            sm.id = "x"
        sm.discard_settings()
    finally:
        s.unlock_machine()


def test_exclusive_write_and_shared(client, new_vm):
    m = new_vm()
    s1, s2, s3 = client.session(), client.session(), client.session()
    m.lock_machine(s1, LockType.Shared)  # nobody holds it: you get a write lock
    assert s1.type == SessionType.WriteLock
    with pytest.raises(VBoxError) as e:
        m.lock_machine(s2, LockType.Write)
    assert e.value.result_code == rc.VBOX_E_INVALID_OBJECT_STATE
    assert e.value.text == f"The machine '{m.name}' is already locked for a session (or being unlocked)"
    m.lock_machine(s3, LockType.Shared)
    assert s3.type == SessionType.Shared
    assert s3.machine == s1.machine and s3.console is None
    with pytest.raises(VBoxError) as e:
        m.lock_machine(s1, LockType.Write)
    assert e.value.text == "The given session is busy"
    s1.unlock_machine()
    assert s3.state == SessionState.Unlocked
    m.lock_machine(s2, LockType.Write)
    s2.unlock_machine()


def test_hardware_settings_roundtrip(client, new_vm):
    m = new_vm()
    s = client.session()
    m.lock_machine(s, LockType.Write)
    sm = s.machine
    sm.platform.x86.set_hw_virt_ex_property(HWVirtExPropertyType.NestedPaging, False)
    sm.platform.x86.set_cpu_property(CPUPropertyTypeX86.X2APIC, True)
    sm.platform.x86.hpet_enabled = True
    sm.firmware_settings.firmware_type = FirmwareType.EFI
    sm.firmware_settings.ioapic_enabled = True
    sm.graphics_adapter.vram_size = 16
    sm.paravirt_provider = ParavirtProvider.KVM
    sm.set_boot_order(1, DeviceType.HardDisk)
    sm.set_boot_order(2, DeviceType.Null)
    nic = sm.get_network_adapter(1)
    nic.enabled = True
    nic.adapter_type = NetworkAdapterType.Virtio
    nic.attachment_type = NetworkAttachmentType.Internal
    nic.internal_network = "intnet"
    uart = sm.get_serial_port(0)
    uart.enabled = True
    uart.host_mode = PortMode.RawFile
    uart.path = "/tmp/serial.log"
    sm.set_extra_data("vboxpy/BootCmdline", "console=ttyS0")
    sm.save_settings()
    s.unlock_machine()
    x86 = m.platform.x86
    assert x86.get_hw_virt_ex_property(HWVirtExPropertyType.NestedPaging) is False
    assert x86.get_hw_virt_ex_property(HWVirtExPropertyType.Enabled) is True
    assert x86.get_cpu_property(CPUPropertyTypeX86.X2APIC) is True
    assert x86.get_cpu_property(CPUPropertyTypeX86.LongMode) is True
    assert m.firmware_settings.firmware_type == FirmwareType.EFI
    assert m.get_boot_order(1) == DeviceType.HardDisk and m.get_boot_order(2) == DeviceType.Null
    assert m.get_boot_order(3) == DeviceType.HardDisk
    assert m.get_effective_paravirt_provider() == ParavirtProvider.KVM
    assert m.get_network_adapter(1).internal_network == "intnet"
    assert m.get_serial_port(0).host_mode == PortMode.RawFile
    assert m.get_extra_data("vboxpy/BootCmdline") == "console=ttyS0"
    f = MachineFile.load(m.settings_file_path).settings
    assert f.hardware.firmware == "EFI" and f.hardware.uarts[0].path == "/tmp/serial.log"
    assert f.hardware.network_adapters[1].type == "Virtio"
    with pytest.raises(VBoxError) as e:
        m.get_boot_order(5)
    assert e.value.result_code == rc.E_INVALIDARG


def test_extra_data_saved_at_once(client, new_vm, vbox):
    m = new_vm()
    s = client.session()
    m.lock_machine(s, LockType.Write)
    s.machine.memory_size = 512  # pending, not saved by set_extra_data
    s.machine.set_extra_data("vboxpy/ForceHM", "1")
    s.unlock_machine()
    f = MachineFile.load(m.settings_file_path).settings
    assert f.extra_data["vboxpy/ForceHM"] == "1" and f.hardware.memory_mb == 128
    assert m.get_extra_data_keys() == ["vboxpy/ForceHM"]
    assert m.get_extra_data("missing") == ""
    vbox.set_extra_data("GUI/Test", "yes")
    assert vbox.get_extra_data("GUI/Test") == "yes"
    vbox.set_extra_data("GUI/Test", "")
    assert "GUI/Test" not in vbox.get_extra_data_keys()


def test_storage_controllers_and_attachments(client, new_vm, vbox, svc_env):
    m = new_vm()
    s = client.session()
    m.lock_machine(s, LockType.Write)
    sm = s.machine
    sata = sm.add_storage_controller("SATA", StorageBus.SATA)
    assert sata.controller_type == StorageControllerType.IntelAhci and sata.port_count == 30
    sm.add_storage_controller("IDE", StorageBus.IDE)
    with pytest.raises(VBoxError) as e:
        sm.add_storage_controller("SATA", StorageBus.SATA)
    assert e.value.result_code == rc.VBOX_E_OBJECT_IN_USE
    sata.port_count = 4
    sm.attach_device_without_medium("IDE", 1, 0, DeviceType.DVD)
    with pytest.raises(VBoxError) as e:
        sm.attach_device_without_medium("IDE", 1, 0, DeviceType.DVD)
    assert e.value.result_code == rc.VBOX_E_OBJECT_IN_USE
    with pytest.raises(VBoxError) as e:
        sm.attach_device_without_medium("SATA", 7, 0, DeviceType.DVD)
    assert e.value.result_code == rc.E_INVALIDARG
    with pytest.raises(VBoxError) as e:
        sm.get_storage_controller_by_name("NVMe")
    assert e.value.text == "Could not find a storage controller named 'NVMe'"
    sm.save_settings()
    s.unlock_machine()
    assert [c.name for c in m.storage_controllers] == ["SATA", "IDE"]
    atts = m.medium_attachments
    assert len(atts) == 1 and atts[0].type == DeviceType.DVD and atts[0].medium is None
    assert atts[0].controller == "IDE" and atts[0].port == 1
    assert m.get_storage_controller_by_name("SATA").port_count == 4
    m.lock_machine(s, LockType.Write)
    s.machine.detach_device("IDE", 1, 0)
    s.machine.remove_storage_controller("IDE")
    s.machine.save_settings()
    s.unlock_machine()
    assert [c.name for c in m.storage_controllers] == ["SATA"] and m.medium_attachments == []


def test_rename_moves_folder(client, vbox, svc_env):
    m = vbox.create_machine("", "old-name", os_type_id="Linux_64")
    m.save_settings()
    vbox.register_machine(m)
    s = client.session()
    m.lock_machine(s, LockType.Write)
    s.machine.name = "new-name"
    s.machine.save_settings()
    s.unlock_machine()
    assert m.settings_file_path == str(svc_env.vms / "new-name" / "new-name.vbox")
    assert os.path.exists(m.settings_file_path) and not os.path.exists(svc_env.vms / "old-name")
    assert vbox.find_machine("new-name").id == m.id
    srcs = [e.src for e in MainFile.load(svc_env.home / "VirtualBox.xml").settings.machine_registry]
    assert m.settings_file_path in srcs


def test_unregister_and_delete(vbox, new_vm, svc_env):
    m = new_vm()
    path, mid = m.settings_file_path, m.id
    folder = os.path.dirname(path)
    media = m.unregister(CleanupMode.DetachAllReturnHardDisksOnly)
    assert media == []
    assert mid not in [x.id for x in vbox.machines]
    with pytest.raises(VBoxError):
        vbox.find_machine(mid)
    p = m.delete_config([])
    p.wait_for_completion(-1)
    assert p.completed and p.result_code == 0
    assert not os.path.exists(path) and not os.path.exists(folder)


def test_delete_removes_the_vm_process_lock_file(vbox, new_vm):
    """A machine that has run has its VM process's lock file beside the settings; deleting the
    machine removes it, and with it the (then empty) machine folder."""
    m = new_vm()
    path = m.settings_file_path
    lock = VmLock(path)         # what a VM process leaves behind after it ran the machine
    lock.acquire()
    lock.release()
    assert os.path.exists(path + "-vmlock")
    m.unregister(CleanupMode.DetachAllReturnHardDisksOnly)
    p = m.delete_config([])
    p.wait_for_completion(-1)
    assert p.completed and p.result_code == 0
    assert not os.path.exists(path + "-vmlock") and not os.path.exists(os.path.dirname(path))


def test_open_machine_and_read_log(vbox, new_vm):
    m = new_vm()
    path = m.settings_file_path
    m.unregister(CleanupMode.UnregisterOnly)
    again = vbox.open_machine(path)
    assert again.id == m.id
    vbox.register_machine(again)
    assert vbox.find_machine(m.id).name == m.name
    assert again.query_log_filename(0) == ""
    logs = os.path.join(again.log_folder)
    os.makedirs(logs, exist_ok=True)
    with open(os.path.join(logs, "VBox.log"), "wb") as f:
        f.write(b"00:00:00.000 hello log\n")
    assert again.read_log(0, 0, 1000) == b"00:00:00.000 hello log\n"
    assert again.read_log(0, 13, 5) == b"hello"
    with pytest.raises(VBoxError) as e:
        again.read_log(3, 0, 10)
    assert e.value.result_code == rc.VBOX_E_IPRT_ERROR


def test_machine_state_basics(new_vm):
    m = new_vm()
    assert m.state == MachineState.PoweredOff
    assert m.last_state_change > 0
    assert m.session_pid == 0
    with pytest.raises(VBoxError) as e:  # only a VM-lock session may report states
        m.update_state(MachineState.Running)
    assert e.value.result_code == rc.E_ACCESSDENIED


def test_apply_defaults_follows_the_os_type(vbox, svc_env):
    m = vbox.create_machine("", "defaults-vm", os_type_id="Debian_64")
    m.apply_defaults("")
    t = vbox.get_guest_os_type("Debian_64")
    assert m.memory_size == t.recommended_ram and m.graphics_adapter.vram_size == t.recommended_vram
    assert m.firmware_settings.ioapic_enabled
    assert {c.name for c in m.storage_controllers} == {"IDE", "SATA"}
    dvd = [a for a in m.medium_attachments if a.type == DeviceType.DVD]
    assert len(dvd) == 1 and dvd[0].controller == "IDE" and dvd[0].medium is None


@pytest.mark.parametrize("os_type, provider, expected", [
    ("Debian_64", "Default", "KVM"), ("Debian_64", "Legacy", "None"), ("Windows10_64", "Default", "HyperV"),
    ("WindowsXP", "Default", "None"), ("Other", "Default", "None"), ("WindowsXP", "Minimal", "Minimal")])
def test_effective_paravirt_provider(client, new_vm, os_type, provider, expected):
    """Machine::getEffectiveParavirtProvider's rule by OS type (MachineImpl.cpp)."""
    m = new_vm(f"pv-{os_type}-{provider}", os_type=os_type)
    s = client.session()
    m.lock_machine(s, LockType.Write)
    s.machine.paravirt_provider = ParavirtProvider[provider]
    s.machine.save_settings()
    s.unlock_machine()
    assert m.get_effective_paravirt_provider() == ParavirtProvider[expected]
