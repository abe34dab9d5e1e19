"""Machine settings (as the Main API returns them) into the VM's CFGM tree, and the VBox.log format."""

from __future__ import annotations

import logging
from types import SimpleNamespace as NS

import pytest

from frontends.headless import vmlog
from frontends.headless.machine_config import ConfigError, read_settings
from vboxsvc.api import (
    CPUPropertyTypeX86,
    DeviceType,
    FirmwareBootMenuMode,
    FirmwareType,
    GraphicsControllerType,
    HWVirtExPropertyType,
    MediumType,
    NetworkAdapterType,
    NetworkAttachmentType,
    ParavirtProvider,
    PortMode,
    StorageControllerType,
    UartType,
)


class FakeMachine:
    """The IMachine members read_settings uses, with VirtualBox's defaults for a new VM."""

    def __init__(self, **kw):
        self.name, self.id, self.os_type_id = "vm1", "1b0c9f1e-0000-4000-8000-000000000001", "Debian_64"
        self.memory_size, self.cpu_count = 256, 1
        self.extra = {"vboxpy/BootKernel": "/k/vmlinux", "vboxpy/BootCmdline": "console=ttyS0"}
        self.cpu_props = {CPUPropertyTypeX86.TripleFaultReset: False}
        self.hw = {HWVirtExPropertyType.Enabled: True}
        self.ports = [NS(enabled=False, host_mode=PortMode.Disconnected, path="", server=False,
                         io_address=0x3F8,
                         irq=4, uart_type=UartType.U16550A) for _ in range(4)]
        self.storage_controllers = []
        self.attachments = {}
        self.nics = [NS(enabled=False) for _ in range(8)]
        self.effective_paravirt = ParavirtProvider.KVM      # Default for Debian_64
        self.firmware_settings = NS(firmware_type=FirmwareType.BIOS,
                                    boot_menu_mode=FirmwareBootMenuMode.MessageAndMenu,
                                    # I/O APIC: 64-bit default
                                    logo_display_time=0, ioapic_enabled=True, acpi_enabled=True)
        self.boot_order = {1: DeviceType.Floppy, 2: DeviceType.DVD, 3: DeviceType.HardDisk,
                           4: DeviceType.Null}
        self.graphics_adapter = NS(graphics_controller_type=GraphicsControllerType.VMSVGA, vram_size=16)
        self.__dict__.update(kw)
        self.platform = NS(x86=NS(get_cpu_property=self.cpu_props.get, get_hw_virt_ex_property=self.hw.get))

    def get_extra_data(self, key):
        return self.extra.get(key, "")

    def get_effective_paravirt_provider(self):
        return self.effective_paravirt

    def get_boot_order(self, position):
        return self.boot_order[position]

    def get_serial_port(self, slot):
        return self.ports[slot]

    def get_medium_attachments_of_controller(self, name):
        return self.attachments.get(name, [])

    def get_network_adapter(self, slot):
        return self.nics[slot]


def _disk(port, location, *, kind=DeviceType.HardDisk, mtype=MediumType.Normal, read_only=False, ssd=False,
          parent=None):
    medium = None if location is None else NS(location=location, type=mtype, read_only=read_only,
                                              parent=parent)
    return NS(medium=medium, type=kind, port=port, device=0, non_rotational=ssd, discard=False)


def test_basic_machine():
    s = read_settings(FakeMachine(cpu_count=2))
    cfg = s.cfg
    assert cfg.get_int("RamSize") == 256 << 20
    assert cfg.get_str("Boot/Kernel") == "/k/vmlinux" and cfg.get("Boot/Initrd") is None
    assert cfg.get_str("Boot/Cmdline") == "console=ttyS0"
    assert cfg.get_bool("TripleFaultReset") is False and s.hwvirtex is True and s.force_hm == ""
    assert cfg.child("Devices/serial") is None and cfg.child("Devices/storage") is None
    assert any("2 CPUs" in n for n in s.notes)


def test_apic_and_ioapic_follow_the_settings():
    cfg = read_settings(FakeMachine()).cfg
    assert cfg.get_bool("APIC") is True and cfg.get_bool("IOAPIC") is True
    m = FakeMachine()
    m.firmware_settings.ioapic_enabled = False
    cfg = read_settings(m).cfg
    assert cfg.get_bool("APIC") is True and cfg.get_bool("IOAPIC") is False
    m = FakeMachine(os_type_id="Debian")
    m.firmware_settings.ioapic_enabled = False
    m.cpu_props[CPUPropertyTypeX86.APIC] = False
    cfg = read_settings(m).cfg
    assert cfg.get_bool("APIC") is False and cfg.get_bool("IOAPIC") is False


@pytest.mark.parametrize("os_type,cpus,ioapic,message", [
    ("Debian_64", 1, False, "Cannot disable the APIC for a 64-bit guest."),
    ("Debian", 2, False, "Cannot disable the APIC for an SMP guest."),
    ("Debian", 1, True, "Cannot disable the APIC when the I/O APIC is present."),
])
def test_apic_off_is_refused_as_virtualbox_does(os_type, cpus, ioapic, message):
    m = FakeMachine(os_type_id=os_type, cpu_count=cpus)
    m.firmware_settings.ioapic_enabled = ioapic
    m.cpu_props[CPUPropertyTypeX86.APIC] = False
    with pytest.raises(ConfigError, match=message):
        read_settings(m)


@pytest.mark.parametrize("provider,name", [(ParavirtProvider.KVM, "kvm"), (ParavirtProvider.HyperV, "hyperv"),
                                           (ParavirtProvider["None"], "none"),
                                           (ParavirtProvider.Minimal, "minimal")])
def test_effective_paravirt_provider_reaches_gim(provider, name):
    cfg = read_settings(FakeMachine(effective_paravirt=provider)).cfg
    assert cfg.get_str("GIM/Provider") == name and cfg.get_str("GIM/OsType") == "Debian_64"


def test_serial_ports_follow_the_settings():
    m = FakeMachine()
    m.ports[0] = NS(enabled=True, host_mode=PortMode.TCP, path="2345", server=True, io_address=0x3F8, irq=4,
                    uart_type=UartType.U16550A)
    m.ports[2] = NS(enabled=True, host_mode=PortMode.RawFile, path="/tmp/com3.log", server=False,
                    io_address=0x3E8,
                    irq=5, uart_type=UartType.U16450)
    cfg = read_settings(m).cfg
    assert sorted(n.name for n in cfg.child("Devices/serial")) == ["0", "2"]
    assert (cfg.get_int("Devices/serial/0/Mode"), cfg.get_str("Devices/serial/0/Path"),
            cfg.get_bool("Devices/serial/0/Server")) == (int(PortMode.TCP), "2345", True)
    assert (cfg.get_int("Devices/serial/2/IOBase"), cfg.get_int("Devices/serial/2/IRQ"),
            cfg.get_int("Devices/serial/2/UartType")) == (0x3E8, 5, int(UartType.U16450))


def test_serial_mode_without_path_is_an_error():
    m = FakeMachine()
    m.ports[1] = NS(enabled=True, host_mode=PortMode.HostPipe, path="", server=True, io_address=0x2F8, irq=3,
                    uart_type=UartType.U16550A)
    with pytest.raises(ConfigError, match="COM2.*HostPipe"):
        read_settings(m)


def test_storage_attachments():
    m = FakeMachine(storage_controllers=[
        NS(name="SATA", controller_type=StorageControllerType.IntelAhci, port_count=2,
           use_host_io_cache=False),
        NS(name="IDE", controller_type=StorageControllerType.PIIX4, port_count=2, use_host_io_cache=False)])
    base = NS(id="b0", location="/other-vm/base.vdi", parent=None)
    mid = NS(id="m1", location="/other-vm/Snapshots/{m1}.vdi", parent=base)
    m.attachments = {"SATA": [_disk(0, "/d/a.vdi", ssd=True, parent=mid), _disk(1, None),
                              _disk(1, "/d/b.vdi", mtype=MediumType.Immutable, read_only=True)],
                     "IDE": [_disk(0, "/iso/x.iso", kind=DeviceType.DVD),
                             _disk(1, None, kind=DeviceType.DVD)]}
    s = read_settings(m)
    sata = s.cfg.child("Devices/storage/0")
    assert (sata.get_str("Name"), sata.get_str("Type"), sata.get_int("PortCount")) == ("SATA", "IntelAhci", 2)
    a0, a1 = sata.child("Attachments/0"), sata.child("Attachments/1")
    assert ((a0.get_str("Path"), a0.get_bool("NonRotational"), a0.get_bool("ReadOnly"))
            == ("/d/a.vdi", True, False))
    assert (a1.get_str("Path"), a1.get_int("Port"), a1.get_bool("ReadOnly")) == ("/d/b.vdi", 1, True)
    # a diff's whole chain comes from the media registry (linked clones' parents live elsewhere)
    assert a0.child("Chain").values == {"m1": "/other-vm/Snapshots/{m1}.vdi", "b0": "/other-vm/base.vdi"}
    assert a1.child("Chain") is None
    ide = s.cfg.child("Devices/storage/1")                   # DVD drives: with a disc, and empty
    d0, d1 = ide.child("Attachments/0"), ide.child("Attachments/1")
    assert (ide.get_str("Type"), d0.get_str("Kind"), d0.get_str("Path"), d0.get_int("Port")) == \
        ("PIIX4", "DVD", "/iso/x.iso", 0)
    assert (d1.get_str("Kind"), d1.get_str("Path"), d1.get_int("Port")) == ("DVD", "", 1)
    assert a0.get_str("Kind") == "HardDisk"
    assert any("immutable" in n for n in s.notes)


def test_dvd_drives_on_sata_but_not_on_virtio_scsi():
    m = FakeMachine(storage_controllers=[
        NS(name="SATA", controller_type=StorageControllerType.IntelAhci, port_count=2,
           use_host_io_cache=False),
        NS(name="VirtIO", controller_type=StorageControllerType.VirtioSCSI, port_count=2,
           use_host_io_cache=False)])
    m.attachments = {"SATA": [_disk(0, "/d/a.vdi"), _disk(1, "/iso/x.iso", kind=DeviceType.DVD)],
                     "VirtIO": [_disk(0, "/d/b.vdi"), _disk(1, "/iso/y.iso", kind=DeviceType.DVD)]}
    s = read_settings(m)
    # SATA DVD drives: ATAPI
    assert s.cfg.child("Devices/storage/0/Attachments/1").get_str("Kind") == "DVD"
    assert s.cfg.child("Devices/storage/1/Attachments/1") is None
    assert any("DVD drives are not emulated by vboxpy on VirtioSCSI" in n for n in s.notes)


def test_disk_on_a_controller_vboxpy_does_not_emulate():
    m = FakeMachine(storage_controllers=[
        NS(name="SCSI", controller_type=StorageControllerType.LsiLogic, port_count=16,
           use_host_io_cache=True)])
    m.attachments = {"SCSI": [_disk(0, "/d/a.vdi")]}
    with pytest.raises(ConfigError, match="'SCSI' is of type LsiLogic"):
        read_settings(m)


def test_force_hm_and_triple_fault_reset():
    m = FakeMachine()
    m.extra["vboxpy/ForceHM"] = "1"
    m.cpu_props[CPUPropertyTypeX86.TripleFaultReset] = True
    m.hw[HWVirtExPropertyType.Enabled] = False
    s = read_settings(m)
    assert s.force_hm == "1" and s.hwvirtex is False and s.cfg.get_bool("TripleFaultReset") is True


def test_log_lines_carry_elapsed_time():
    rec = logging.LogRecord("vboxpy.headless", logging.INFO, __file__, 1, "two\nlines", None, None)
    rec.created = vmlog._T0 + 3723.5
    out = vmlog.ElapsedFormatter().format(rec).splitlines()
    assert out == ["01:02:03.500000 two", "01:02:03.500000 lines"]


def test_rotate_keeps_history(tmp_path):
    for _ in range(4):
        path = vmlog.rotate(str(tmp_path), 2)
        with open(path, "a") as f:
            f.write("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VBox.log", "VBox.log.1", "VBox.log.2"]


def _nat_nic(**kw):
    engine = NS(network="", host_ip="", localhost_reachable=True, dns_proxy=False, dns_use_host_resolver=True,
                alias_mode=0, tftp_prefix="", tftp_boot_file="", tftp_next_server="",
                get_network_settings=lambda: [0, 0, 0, 0, 0],
                redirects=["ssh,1,127.0.0.1,2222,,22", "dns,0,,5353,10.0.2.15,53"])
    nic = NS(enabled=True, attachment_type=NetworkAttachmentType.NAT,
             adapter_type=NetworkAdapterType.I82540EM,
             mac_address="080027AABBCC", cable_connected=True, trace_enabled=False, trace_file="",
             internal_network="", bridged_interface="", host_only_interface="", generic_driver="",
             nat_engine=engine)
    nic.__dict__.update(kw)
    return nic


def test_network_adapters_reach_cfgm():
    m = FakeMachine()
    m.nics[0] = _nat_nic()
    m.nics[1] = _nat_nic(attachment_type=NetworkAttachmentType.Internal, internal_network="lab",
                         adapter_type=NetworkAdapterType.Virtio, cable_connected=False,
                         mac_address="080027000001")
    cfg = read_settings(m).cfg
    assert (cfg.get_str("Devices/net/0/AdapterType") == "I82540EM"
            and cfg.get_str("Devices/net/0/Attachment") == "NAT")
    assert cfg.get_bool("Devices/net/0/NAT/UseHostResolver") is True
    rules = [(r.get_str("Name"), r.get_bool("UDP"), r.get_int("HostPort"))
             for r in cfg.child("Devices/net/0/NAT/Rules")]
    assert rules == [("ssh", False, 2222), ("dns", True, 5353)]
    assert (cfg.get_str("Devices/net/1/Network") == "lab"
            and cfg.get_bool("Devices/net/1/CableConnected") is False)
    assert cfg.child("Devices/net/2") is None


def test_network_adapter_without_mac_is_refused():
    m = FakeMachine()
    m.nics[0] = _nat_nic(mac_address="")
    with pytest.raises(ConfigError, match="MAC address"):
        read_settings(m)
def test_firmware_and_boot_order():
    fm = FakeMachine(boot_order={1: DeviceType.HardDisk, 2: DeviceType.DVD, 3: DeviceType.Null,
                                 4: DeviceType.Network})
    fm.firmware_settings.firmware_type = FirmwareType.EFI
    cfg = read_settings(fm).cfg
    assert cfg.get("Firmware/Type") == "EFI" and cfg.get("Firmware/BootMenu") == "MessageAndMenu"
    assert cfg.get("ACPI") is True
    assert [cfg.get(f"BootOrder/{i}") for i in range(1, 5)] == ["HardDisk", "DVD", "Null", "Network"]


def test_shared_folders_reach_cfgm_and_the_vmm(tmp_path):
    from frontends.headless.machine_config import add_shared_folders
    from vmm.vm import Machine
    m = FakeMachine()
    m.extra["VBoxInternal2/SharedFoldersEnableSymlinksCreate/code"] = "1"
    folders = [NS(name="code", host_path=str(tmp_path), writable=True, auto_mount=True,
                  auto_mount_point="/code"),
               NS(name="docs", host_path="/srv/docs", writable=False, auto_mount=False, auto_mount_point="")]
    cfg = read_settings(m).cfg
    add_shared_folders(m, cfg, folders)
    specs = {s.name: s for s in Machine._folder_specs(cfg)}
    assert specs["code"].symlinks and specs["code"].writable and specs["code"].auto_mount_point == "/code"
    assert (not specs["docs"].writable and not specs["docs"].symlinks
            and specs["docs"].host_path == "/srv/docs")


def test_transient_folders_reach_the_running_vm(tmp_path):
    from frontends.headless.machine_config import add_shared_folders
    from frontends.headless.vmprocess import VmProcess

    class FakeVm:
        folders = None

        def set_shared_folders(self, folders):
            self.folders = folders

    m = FakeMachine()
    vp = VmProcess(client=None, vm_ref="vm1")
    vp.sm, vp.settings, vp.vm = m, read_settings(m), FakeVm()
    add_shared_folders(m, vp.settings.cfg,
                       [NS(name="code", host_path="/srv/code", writable=True, auto_mount=False,
                                               auto_mount_point="")])
    vp.shared_folders_changed([NS(name="t", host_path=str(tmp_path), writable=False, auto_mount=True,
                                  auto_mount_point=""),
                               NS(name="CODE", host_path=str(tmp_path), writable=True, auto_mount=False,
                                  auto_mount_point="")])
    got = {f.name: f for f in vp.vm.folders}
    assert set(got) == {"t", "CODE"} and got["CODE"].host_path == str(tmp_path) and not got["t"].writable
    vp.shared_folders_changed([])
    assert [f.name for f in vp.vm.folders] == ["code"]


def test_graphics_controller_and_vram_reach_the_display_keys():
    fm = FakeMachine()
    fm.graphics_adapter.graphics_controller_type = GraphicsControllerType.VBoxVGA
    fm.graphics_adapter.vram_size = 32
    cfg = read_settings(fm).cfg
    assert cfg.get_str("Display/Controller") == "VBoxVGA" and cfg.get_int("Display/VRAMSize") == 32 << 20
