"""Command wiring against an in-process fake of the Main API (names as in vboxsvc.api's schema).

Checks what each command calls and prints without a service; the integration tests run the
same commands against the real one.
"""

import re
import types

import pytest

from frontends.vboxmanage import main as vbm
from frontends.vboxmanage.api import Api
from frontends.vboxmanage.output import State
from vboxsvc.api import enums as e
from vboxsvc.api.errors import VBOX_E_OBJECT_NOT_FOUND, VBoxError
from vboxsvc.ipc.wire import Earlier


class Adapter(types.SimpleNamespace):
    pass


class FakeMachine:
    def __init__(self, name, path, uuid):
        self.name, self.settings_file_path, self.id = name, path, uuid
        self.memory_size = 128
        self.cpu_count = 1
        self.os_type_id = "Other"
        self.extra = {}
        self.saved = 0
        self.boot = {1: e.DeviceType.Floppy, 2: e.DeviceType.DVD, 3: e.DeviceType.HardDisk,
                     4: e.DeviceType.Null}
        self.firmware_settings = types.SimpleNamespace(firmware_type=e.FirmwareType.BIOS, acpi_enabled=True,
                                                       ioapic_enabled=True)
        self.hw = {}
        self.platform = types.SimpleNamespace(x86=types.SimpleNamespace(
            set_hw_virt_ex_property=lambda p, v: self.hw.__setitem__(p, v),
            set_cpu_property=lambda p, v: self.hw.__setitem__(p, v)))
        self.nics = [Adapter(enabled=False, attachment_type=e.NetworkAttachmentType.Null, mac_address="")
                     for _ in range(8)]
        self.ports = [Adapter(enabled=False, io_address=0, irq=0, host_mode=e.PortMode.Disconnected, path="",
                              server=False) for _ in range(4)]
        self.locks = []

    def lock_machine(self, session, lock):
        self.locks.append(lock)
        session.machine = self

    def save_settings(self):
        self.saved += 1

    def set_boot_order(self, pos, dev):
        self.boot[pos] = dev

    def get_network_adapter(self, slot):
        return self.nics[slot]

    def get_serial_port(self, slot):
        return self.ports[slot]

    def set_extra_data(self, key, value):
        if value:
            self.extra[key] = value
        else:
            self.extra.pop(key, None)

    def get_extra_data(self, key):
        return self.extra.get(key, "")

    def get_extra_data_keys(self):
        return sorted(self.extra)


class FakeSession:
    def __init__(self):
        self.machine = None
        self.unlocked = 0

    def unlock_machine(self):
        self.unlocked += 1


class FakeVBox:
    def __init__(self):
        self.machines = []
        self.registered = []
        self.extra = {}

    def find_machine(self, name):
        for m in self.machines:
            if name in (m.name, m.id):
                return m
        raise VBoxError(VBOX_E_OBJECT_NOT_FOUND, f"Could not find a registered machine named '{name}'",
                        "IVirtualBox", "VirtualBoxWrap")

    def compose_machine_filename(self, name, group, flags, base):
        return f"{base or '/home/u/VirtualBox VMs'}/{name}/{name}.vbox"

    def create_machine(self, path, name, arch, groups, os_type, flags, *rest):
        assert arch == 1
        return FakeMachine(name, path, flags.removeprefix("UUID=") or "0000-1")

    def register_machine(self, machine):
        self.registered.append(machine)
        self.machines.append(machine)

    def get_extra_data(self, key):
        return self.extra.get(key, "")

    def set_extra_data(self, key, value):
        self.extra[key] = value


@pytest.fixture
def api(monkeypatch):
    vbox = FakeVBox()
    sessions = []

    def new_session():
        sessions.append(FakeSession())
        return sessions[-1]

    def batch(calls, enums=True):  # as the service runs a batch: each call on its own, its error kept
        out = []

        def earlier(value):  # an Earlier: the result of that entry (the service checks it answered)
            if type(value) is not Earlier:
                return value
            ok, got = out[value.index]
            if not ok:
                raise VBoxError(0x80070057, "an earlier entry failed")
            return got

        for obj, kind, member, args in calls:
            try:
                obj, args = earlier(obj), [earlier(a) for a in args]
                out.append((True, getattr(obj, member) if kind == 1 else getattr(obj, member)(*args)))
            except VBoxError as exc:
                out.append((False, exc))
        return out

    class FakeVBoxClient:  # IVirtualBoxClient: a new session per read of `session`
        session = property(lambda self: new_session())

    client = types.SimpleNamespace(virtualbox=vbox, session=new_session, close=lambda: None, batch=batch,
                                   virtualbox_client=FakeVBoxClient(),
                                   send_last=lambda obj, method, args=(): getattr(obj, method)(*args))
    monkeypatch.setattr(Api, "_client", None)
    monkeypatch.setattr(Api, "client", classmethod(lambda cls: client))
    State.nologo, State.logo_shown = True, False
    yield types.SimpleNamespace(vbox=vbox, sessions=sessions)
    State.nologo = False


def run(capsys, *args):
    code = vbm.run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_createvm_register_prints_three_lines(api, capsys):
    code, out, err = run(capsys, "createvm", "--name", "vm1", "--ostype", "Ubuntu_64", "--register",
                         "--uuid", "1234")
    assert (code, err) == (0, "")
    assert out == ("Virtual machine 'vm1' is created and registered.\nUUID: 1234\n"
                   "Settings file: '/home/u/VirtualBox VMs/vm1/vm1.vbox'\n")
    assert api.vbox.registered[0].saved == 1


def test_unknown_vm_prints_error_block_exit_1(api, capsys):
    code, out, err = run(capsys, "showvminfo", "ghost")
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == "VBoxManage: error: Could not find a registered machine named 'ghost'"
    assert lines[1] == ("VBoxManage: error: Details: code VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), component "
                        "VirtualBoxWrap, interface IVirtualBox, callee nsISupports")
    assert lines[2].startswith('VBoxManage: error: Context: "FindMachine(Bstr(VMNameOrUuid).raw(), '
                               'machine.asOutParam())" at line ')


def test_modifyvm_applies_in_order_saves_and_unlocks(api, capsys):
    m = FakeMachine("vm1", "/x.vbox", "u1")
    api.vbox.machines.append(m)
    code, out, err = run(capsys, "modifyvm", "vm1", "--memory", "512", "--cpus=2", "--ostype", "Linux_64",
                         "--firmware", "efi", "--acpi", "off", "--nested-paging", "off", "--vtxvpid", "on",
                         "--boot1", "disk", "--boot2", "none", "--nic1", "nat", "--nictype1", "virtio",
                         "--macaddress1", "080027abcdef", "--uart1", "0x3F8", "4", "--uart-mode1", "file",
                         "/tmp/s.log", "--boot-kernel", "/k/vmlinuz", "--boot-cmdline", "console=ttyS0")
    assert (code, out, err) == (0, "", "")
    assert (m.memory_size, m.cpu_count, m.os_type_id) == (512, 2, "Linux_64")
    assert (m.firmware_settings.firmware_type == e.FirmwareType.EFI
            and m.firmware_settings.acpi_enabled is False)
    assert m.hw == {e.HWVirtExPropertyType.NestedPaging: False, e.HWVirtExPropertyType.VPID: True}
    assert m.boot[1] == e.DeviceType.HardDisk and m.boot[2] == e.DeviceType.Null
    nic = m.nics[0]
    assert (nic.enabled, nic.attachment_type, nic.adapter_type, nic.mac_address) == (
        True, e.NetworkAttachmentType.NAT, e.NetworkAdapterType.Virtio, "080027ABCDEF")
    port = m.ports[0]
    assert (port.enabled, port.io_address, port.irq, port.host_mode, port.path) == (
        True, 0x3F8, 4, e.PortMode.RawFile, "/tmp/s.log")
    assert m.extra == {"vboxpy/BootKernel": "/k/vmlinuz", "vboxpy/BootCmdline": "console=ttyS0"}
    assert m.locks == [e.LockType.Write] and m.saved == 1 and api.sessions[0].unlocked == 1


def test_modifyvm_bad_value_is_syntax_error_and_unlocks(api, capsys):
    m = FakeMachine("vm1", "/x.vbox", "u1")
    api.vbox.machines.append(m)
    code, _, err = run(capsys, "modifyvm", "vm1", "--acpi", "maybe")
    assert code == 2 and err.startswith("VBoxManage: error: Invalid boolean value 'maybe' for option --acpi")
    assert m.saved == 0 and api.sessions[0].unlocked == 1


def test_extradata_global_and_machine(api, capsys):
    m = FakeMachine("vm1", "/x.vbox", "u1")
    api.vbox.machines.append(m)
    assert run(capsys, "setextradata", "global", "GUI/Foo", "bar") == (0, "", "")
    assert run(capsys, "getextradata", "global", "GUI/Foo") == (0, "Value: bar\n", "")
    assert run(capsys, "getextradata", "global", "GUI/None") == (0, "No value set!\n", "")
    assert run(capsys, "setextradata", "vm1", "k2", "v2") == (0, "", "")
    assert run(capsys, "setextradata", "vm1", "k1", "v1") == (0, "", "")
    assert run(capsys, "getextradata", "vm1", "enumerate") == (0,
                                                               "Key: k1, Value: v1\nKey: k2, Value: v2\n", "")
    assert m.locks == [e.LockType.Shared, e.LockType.Shared]


def test_missing_api_member_reports_not_implemented(api, capsys):
    m = FakeMachine("vm1", "/x.vbox", "u1")
    api.vbox.machines.append(m)

    class IMachine:  # a proxy class without clone_to, as the bus would have it
        __slots__ = ()

    src = IMachine()
    api.vbox.find_machine = lambda name: src
    code, _, err = run(capsys, "clonevm", "vm1")
    assert code == 1
    assert err.startswith("VBoxManage: error: 'IMachine' object has no attribute") is False
    assert "is not implemented by this vboxsvc" in err.splitlines()[0]
    assert "code NS_ERROR_NOT_IMPLEMENTED (0x80004001)" in err


def test_list_vms_fast_path_and_sorted_runningvms(api, capsys):
    from frontends.vboxmanage.listing import fast

    for name, uuid in (("zeta", "u1"), ("Alpha", "u2"), ("mid", "u3")):
        m = FakeMachine(name, f"/{name}.vbox", uuid)
        m.accessible = True
        api.vbox.machines.append(m)
    api.vbox.machines[2].accessible = False
    api.vbox.machines[2].name = "u3"  # our service names an inaccessible machine by its id

    class Broken(FakeMachine):  # VirtualBox refuses to read the name of an inaccessible machine
        accessible = False

        @property
        def name(self):
            raise VBoxError(0x80070005, "The object is not ready", "IMachine", "MachineWrap")

        @name.setter
        def name(self, _value):
            pass

    api.vbox.machines.append(Broken("x", "/x.vbox", "u4"))
    states = {"u1": e.MachineState.Running, "u2": e.MachineState.PoweredOff, "u3": e.MachineState.Paused,
              "u4": e.MachineState.PoweredOff}
    api.vbox.get_machine_states = lambda ms: [states[m.id] for m in ms]
    assert run(capsys, "list", "vms") == (
        0, '"zeta" {u1}\n"Alpha" {u2}\n"<inaccessible>" {u3}\n"<inaccessible>" {u4}\n', "")
    assert run(capsys, "list", "--sorted", "vms") == (
        0, '"<inaccessible>" {u3}\n"<inaccessible>" {u4}\n"Alpha" {u2}\n"zeta" {u1}\n', "")
    assert run(capsys, "list", "runningvms") == (0, '"zeta" {u1}\n"<inaccessible>" {u3}\n', "")
    assert fast(["vms", "--long"]) is None and fast(["hdds"]) is None


def test_service_unreachable_message(monkeypatch, capsys):
    import vboxsvc.ipc.client as client_mod

    def fail(*_a, **_k):
        raise VBoxError(0x800706BE, "Failed to start the VirtualBox service (vboxsvc)", "IVirtualBoxClient",
                        "VirtualBoxClientWrap")

    monkeypatch.setattr(client_mod, "connect", fail)
    monkeypatch.setattr(Api, "_client", None)
    State.nologo = True
    try:
        code, out, err = run(capsys, "list", "vms")
    finally:
        State.nologo = False
    assert (code, out) == (1, "")
    assert err == (
        "VBoxManage: error: Failed to create the VirtualBox object!\n"
        "VBoxManage: error: Failed to start the VirtualBox service (vboxsvc)\n"
        "VBoxManage: error: Details: code NS_ERROR_CALL_FAILED (0x800706be), component VirtualBoxClientWrap, "
        "interface IVirtualBoxClient, callee nsISupports\n"
        "VBoxManage: error: Most likely, the VirtualBox COM server is not running or failed to start.\n")


def test_api_error_outside_call_context_is_a_block_not_a_traceback(api, capsys):
    def boom(*_a):
        raise VBoxError(0x80BB0007, "busy", "IVirtualBox", "VirtualBoxWrap")

    api.vbox.get_extra_data_keys = boom
    code, out, err = run(capsys, "getextradata", "global")
    assert code == 1 and err.startswith("VBoxManage: error: busy\n")


class FakeConsoleProgress:
    def __init__(self, code=0):
        self.completed, self.result_code, self.canceled, self.cancelable = True, code, False, False
        self.percent = 0 if code else 100
        self.error_info = None

    def wait_for_completion(self, _ms):
        pass


class FakeConsole:
    def __init__(self):
        self.calls = []
        self.state = e.MachineState.Running

    def pause(self):
        self.calls.append("pause")
        self.state = e.MachineState.Paused

    def resume(self):
        self.calls.append("resume")

    def reset(self):
        self.calls.append("reset")

    def power_button(self):
        self.calls.append("power_button")

    def power_down(self):
        self.calls.append("power_down")
        return FakeConsoleProgress()

    def save_state(self):
        self.calls.append("save_state")
        return FakeConsoleProgress(0x80BB0002)


def running_machine(api, console):
    m = FakeMachine("vm1", "/x.vbox", "u1")
    orig = m.lock_machine

    def lock(session, lock_type):
        orig(session, lock_type)
        session.console = console

    m.lock_machine = lock
    api.vbox.machines.append(m)
    return m


def test_controlvm_actions_use_the_console(api, capsys):
    console = FakeConsole()
    m = running_machine(api, console)
    for action in ("pause", "resume", "reset", "acpipowerbutton"):
        assert run(capsys, "controlvm", "vm1", action) == (0, "", "")
    assert run(capsys, "controlvm", "vm1", "poweroff") == (
        0, "", "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%\n")
    assert console.calls == ["pause", "resume", "reset", "power_button", "power_down"]
    assert set(m.locks) == {e.LockType.Shared} and all(s.unlocked == 1 for s in api.sessions)


def test_controlvm_savestate_pauses_then_resumes_on_failure(api, capsys):
    console = FakeConsole()
    running_machine(api, console)
    code, out, err = run(capsys, "controlvm", "vm1", "savestate")
    assert code == 1 and console.calls == ["pause", "save_state", "resume"]
    assert err.startswith("0%...VBOX_E_INVALID_VM_STATE\nVBoxManage: error: Failed to save machine state\n")


def test_controlvm_not_running(api, capsys):
    running_machine(api, None)
    assert run(capsys, "controlvm", "vm1", "pause") == (
        1, "", "VBoxManage: error: Machine 'vm1' is not currently running.\n")


def test_snapshot_unique_names(api):
    from frontends.vboxmanage.cmd_snapshot import _unique_name
    from frontends.vboxmanage.output import ArgumentFailure

    taken = {"s", "s2", "s 1"}

    def find(name):
        if name not in taken:
            raise VBoxError(0x80BB0001, f"Could not find a snapshot named '{name}'", "IMachine",
                            "MachineWrap")
        return name

    m = types.SimpleNamespace(find_snapshot=find)
    assert _unique_name(m, "s", "Number") == "s3"
    assert _unique_name(m, "s", "num,Space") == "s 2"
    assert _unique_name(m, "s", "Number,Space,Force") == "s 2"
    assert _unique_name(m, "free", "Number") == "free"
    assert _unique_name(m, "s", "Space") == "s"
    stamp = _unique_name(m, "s", "Timestamp")
    assert re.fullmatch(r"s\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    with pytest.raises(ArgumentFailure):
        _unique_name(m, "s", "Numbr")
