"""A pre-4.0 setup (~/.VirtualBox/Machines/*/*.xml, HardDisks/, global media registry) is read in
place and never moved or converted."""

from __future__ import annotations

import os

import pytest

from settings import paths
from settings.machine_file import MachineFile
from settings.main_file import MainFile

from .samples import HEADER

VM = "6f1e2d3c-4b5a-4697-8877-665544332211"
DISK = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"

MAIN = HEADER + f"""<VirtualBox xmlns="http://www.virtualbox.org/" version="1.10-linux">
  <Global>
    <ExtraData>
      <ExtraDataItem name="GUI/SUNOnlineData" value="triesLeft=0"/>
    </ExtraData>
    <MachineRegistry>
      <MachineEntry uuid="{{{VM}}}" src="Machines/old/old.xml"/>
    </MachineRegistry>
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{{{DISK}}}" location="HardDisks/old.vdi" format="VDI" type="Normal"/>
      </HardDisks>
      <DVDImages/>
      <FloppyImages/>
    </MediaRegistry>
    <NetserviceRegistry>
      <DHCPServers>
        <DHCPServer networkName="HostInterfaceNetworking-vboxnet0" IPAddress="192.168.56.100" networkMask="255.255.255.0" lowerIP="192.168.56.101" upperIP="192.168.56.254" enabled="1"/>
      </DHCPServers>
    </NetserviceRegistry>
    <SystemProperties defaultMachineFolder="Machines" defaultHardDiskFolder="HardDisks" defaultHardDiskFormat="VDI" remoteDisplayAuthLibrary="VRDPAuth" webServiceAuthLibrary="VRDPAuth" LogHistoryCount="3"/>
    <USBDeviceFilters/>
  </Global>
</VirtualBox>
"""  # noqa: E501 - as VirtualBox writes it

ADAPTERS = "".join(
    f'        <Adapter slot="{i}" enabled="false" MACAddress="08002700000{i}" cable="true" speed="0" '
    f'type="Am79C973"/>\n'
    for i in range(1, 8))

MACHINE = HEADER + f"""<VirtualBox xmlns="http://www.virtualbox.org/" version="1.10-linux">
  <Machine uuid="{{{VM}}}" name="old" OSType="Ubuntu" lastStateChange="2010-06-01T12:00:00Z">
    <Hardware version="2">
      <CPU count="1" hotplug="false">
        <HardwareVirtEx enabled="true" exclusive="false"/>
        <HardwareVirtExNestedPaging enabled="true"/>
        <HardwareVirtExVPID enabled="true"/>
        <PAE enabled="false"/>
      </CPU>
      <Memory RAMSize="512" PageFusion="false"/>
      <HID Pointing="PS2Mouse" Keyboard="PS2Keyboard"/>
      <HPET enabled="false"/>
      <Boot>
        <Order position="1" device="Floppy"/>
        <Order position="2" device="DVD"/>
        <Order position="3" device="HardDisk"/>
        <Order position="4" device="None"/>
      </Boot>
      <Display VRAMSize="12" monitorCount="1" accelerate3D="false" accelerate2DVideo="false"/>
      <RemoteDisplay enabled="false" port="3389" authType="Null" authTimeout="5000"/>
      <BIOS>
        <ACPI enabled="true"/>
        <IOAPIC enabled="false"/>
        <Logo fadeIn="true" fadeOut="true" displayTime="0"/>
        <BootMenu mode="MessageAndMenu"/>
        <TimeOffset value="0"/>
        <PXEDebug enabled="false"/>
      </BIOS>
      <USBController enabled="false" enabledEhci="false"/>
      <Network>
        <Adapter slot="0" enabled="true" MACAddress="080027ABCDEF" cable="true" speed="0" type="Am79C973">
          <NAT/>
        </Adapter>
{ADAPTERS}      </Network>
      <UART>
        <Port slot="0" enabled="false" IOBase="0x3F8" IRQ="4" hostMode="Disconnected"/>
        <Port slot="1" enabled="false" IOBase="0x2F8" IRQ="3" hostMode="Disconnected"/>
      </UART>
      <AudioAdapter controller="AC97" driver="Pulse" enabled="true"/>
      <SharedFolders/>
      <Clipboard mode="Bidirectional"/>
      <Guest memoryBalloonSize="0"/>
      <GuestProperties/>
    </Hardware>
    <StorageControllers>
      <StorageController name="IDE Controller" type="PIIX4" PortCount="2" useHostIOCache="true">
        <AttachedDevice type="HardDisk" port="0" device="0">
          <Image uuid="{{{DISK}}}"/>
        </AttachedDevice>
        <AttachedDevice passthrough="false" type="DVD" port="1" device="0"/>
      </StorageController>
    </StorageControllers>
  </Machine>
</VirtualBox>
"""


@pytest.fixture
def legacy_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    vbox = home / ".VirtualBox"
    (vbox / "Machines" / "old").mkdir(parents=True)
    (vbox / "HardDisks").mkdir()
    (vbox / "VirtualBox.xml").write_text(MAIN)
    (vbox / "Machines" / "old" / "old.xml").write_text(MACHINE)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("VBOX_USER_HOME", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    return vbox


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_legacy_setup_is_found_and_read_in_place(legacy_home):
    assert paths.vbox_user_home() == legacy_home
    main = MainFile.load(legacy_home / "VirtualBox.xml")
    assert main.version.minor == 10
    sp = main.settings.system_properties
    assert paths.default_machine_folder(sp.default_machine_folder) == legacy_home.parent / "VirtualBox VMs"
    entry = main.settings.machine_registry[0]
    assert main.machine_path(entry) == legacy_home / "Machines" / "old" / "old.xml"
    disk = main.settings.media_registry.hard_disks[0]
    assert disk.location == str(legacy_home / "HardDisks" / "old.vdi")
    vm = MachineFile.load(main.machine_path(entry))
    h = vm.settings.hardware
    assert (vm.settings.name, h.memory_mb, h.pae, h.long_mode, h.paravirt_provider) == (
        "old", 512, False, None, "Legacy"
    )
    ide = h.storage_controllers[0]
    assert (ide.name, ide.bus, ide.controller_type) == ("IDE Controller", "IDE", "PIIX4")
    assert str(ide.devices[0].medium) == DISK
    assert main.settings.media_registry.find(ide.devices[0].medium) is not None
    assert h.network_adapters[0].type == "Am79C973" and h.uarts[1].io_base == 0x2F8


def test_legacy_files_are_saved_where_they_are_without_conversion(legacy_home):
    before = _tree(legacy_home)
    main = MainFile.load(legacy_home / "VirtualBox.xml")
    main.save()
    assert (legacy_home / "VirtualBox.xml").read_text() == MAIN
    vm = MachineFile.load(legacy_home / "Machines" / "old" / "old.xml")
    vm.save()
    assert vm.path.read_text() == MACHINE
    vm.settings.hardware.memory_mb = 768
    vm.settings.hardware.uarts[0].enabled = True
    vm.save()
    assert vm.path.read_text() == MACHINE.replace('RAMSize="512"', 'RAMSize="768"').replace(
        '<Port slot="0" enabled="false" IOBase="0x3F8"', '<Port slot="0" enabled="true" IOBase="0x3F8"')
    assert vm.version.minor == 10
    after = _tree(legacy_home)
    assert sorted(set(after) - set(before)) == ["Machines/old/old.xml-prev", "VirtualBox.xml-prev"]
    assert not (legacy_home.parent / ".config").exists()
    assert not (legacy_home.parent / "VirtualBox VMs").exists()


def test_legacy_bump_keeps_the_old_layout_folder_and_backs_up(legacy_home):
    vm = MachineFile.load(legacy_home / "Machines" / "old" / "old.xml")
    vm.settings.hardware.paravirt_provider = "KVM"
    vm.save()
    assert vm.version.minor == 15  # paravirt providers came with 1.15 (VirtualBox 5.0)
    assert vm.path == legacy_home / "Machines" / "old" / "old.xml"
    assert (legacy_home / "Machines" / "old" / "old-1.10-linux.xml").read_text() == MACHINE
    again = MachineFile.load(vm.path).settings
    assert again.hardware.paravirt_provider == "KVM" and again == vm.settings


ISO = "8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e"
MACHINE_1_7 = HEADER + f"""<VirtualBox xmlns="http://www.virtualbox.org/" version="1.7-linux">
  <Machine uuid="{{{VM}}}" name="older" OSType="WindowsXP" lastStateChange="2009-03-01T12:00:00Z">
    <Hardware version="2">
      <CPU count="1">
        <HardwareVirtEx enabled="true"/>
        <PAE enabled="false"/>
      </CPU>
      <Memory RAMSize="256"/>
      <Boot>
        <Order position="1" device="DVD"/>
        <Order position="2" device="HardDisk"/>
      </Boot>
      <Display VRAMSize="8" MonitorCount="1" Accelerate3D="false"/>
      <DVDDrive passthrough="true">
        <Image uuid="{{{ISO}}}"/>
      </DVDDrive>
      <FloppyDrive enabled="true">
        <HostDrive src="/dev/fd0"/>
      </FloppyDrive>
      <AudioAdapter controller="AC97" driver="ALSA" enabled="false"/>
    </Hardware>
    <StorageControllers>
      <StorageController name="IDE" type="PIIX3" PortCount="2">
        <AttachedDevice type="HardDisk" port="0" device="0">
          <Image uuid="{{{DISK}}}"/>
        </AttachedDevice>
      </StorageController>
    </StorageControllers>
  </Machine>
</VirtualBox>
"""


def test_pre_1_9_drives_are_read_and_saved_as_1_9_attachments(tmp_path):
    p = tmp_path / "older.xml"
    p.write_text(MACHINE_1_7)
    vm = MachineFile.load(p)
    h = vm.settings.hardware
    assert (h.pae, h.boot_order) == (False, ["DVD", "HardDisk", "Null", "Null"])
    ide, floppy = h.storage_controllers
    assert ide.name == "IDE Controller"  # pre-1.8 short names are expanded
    assert [(d.type, d.port, d.device) for d in ide.devices] == [("HardDisk", 0, 0), ("DVD", 1, 0)]
    assert str(ide.devices[1].medium) == ISO and ide.devices[1].passthrough
    assert (floppy.name, floppy.controller_type, floppy.devices[0].host_drive) == (
        "Floppy Controller", "I82078", "/dev/fd0"
    )
    vm.save()
    assert vm.version.minor == 9
    assert (tmp_path / "older-1.7-linux.xml").read_text() == MACHINE_1_7
    text = p.read_text()
    assert "<DVDDrive" not in text and "<FloppyDrive" not in text
    assert '<StorageController name="IDE Controller" type="PIIX3" PortCount="2">' in text
    assert '<AudioAdapter controller="AC97" driver="ALSA" enabled="false"/>' in text
    assert MachineFile.load(p).settings == vm.settings
