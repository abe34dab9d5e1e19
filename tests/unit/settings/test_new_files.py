"""Fresh files look as VirtualBox 7 writes them; saves are atomic and keep `-prev`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from settings.machine_file import MachineFile
from settings.main_file import MainFile
from settings.models import AttachedDevice, MachineSettings, Medium, NetworkAdapter, StorageController
from settings.version import host_platform

from .samples import HEADER

VM = uuid.UUID("11111111-2222-4333-8444-555555555555")
DISK = uuid.UUID("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")


def test_new_machine_file_layout(tmp_path):
    folder = tmp_path / "vm1"
    folder.mkdir()
    s = MachineSettings(uuid=VM, name="vm1", os_type="Ubuntu_64",
                        last_state_change=datetime(2025, 1, 1, 10, 0, tzinfo=UTC))
    s.hardware.memory_mb = 1024
    s.hardware.graphics_controller = "VMSVGA"
    s.hardware.vram_mb = 16
    s.hardware.network_adapters[0] = NetworkAdapter(slot=0, enabled=True, mac="080027A1B2C3", type="I82540EM",
                                                    attachment_type="NAT")
    s.media_registry.hard_disks.append(Medium(uuid=DISK, location=str(folder / "vm1.vdi")))
    s.hardware.storage_controllers.append(StorageController(
        name="SATA", bus="SATA", devices=[AttachedDevice(type="HardDisk", port=0, device=0, medium=DISK)]))
    mf = MachineFile.new(folder / "vm1.vbox", s)
    mf.save()
    expected = HEADER + f"""<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-{host_platform()}">
  <Machine uuid="{{{VM}}}" name="vm1" OSType="Ubuntu_64" snapshotFolder="Snapshots" lastStateChange="2025-01-01T10:00:00Z">
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{{{DISK}}}" location="vm1.vdi" format="VDI" type="Normal"/>
      </HardDisks>
    </MediaRegistry>
    <Hardware>
      <Memory RAMSize="1024"/>
      <Display controller="VMSVGA" VRAMSize="16"/>
      <Network>
        <Adapter slot="0" enabled="true" MACAddress="080027A1B2C3" type="82540EM">
          <NAT/>
        </Adapter>
      </Network>
      <StorageControllers>
        <StorageController name="SATA" type="AHCI" PortCount="30" useHostIOCache="false" Bootable="true" IDE0MasterEmulationPort="0" IDE0SlaveEmulationPort="1" IDE1MasterEmulationPort="2" IDE1SlaveEmulationPort="3">
          <AttachedDevice type="HardDisk" hotpluggable="false" port="0" device="0">
            <Image uuid="{{{DISK}}}"/>
          </AttachedDevice>
        </StorageController>
      </StorageControllers>
      <CPU>
        <PAE enabled="true"/>
        <LongMode enabled="true"/>
        <HardwareVirtExLargePages enabled="false"/>
      </CPU>
    </Hardware>
  </Machine>
</VirtualBox>
"""  # noqa: E501 - the file as VirtualBox writes it
    assert (folder / "vm1.vbox").read_text() == expected
    assert not (folder / "vm1.vbox-prev").exists()  # nothing to keep on the first save
    assert MachineFile.load(folder / "vm1.vbox").settings == s


def test_new_main_file_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    mf = MainFile.new(tmp_path / "VirtualBox.xml")
    mf.save()
    text = (tmp_path / "VirtualBox.xml").read_text()
    assert text.startswith(HEADER
                           + f'<VirtualBox xmlns="http://www.virtualbox.org/" '
                           f'version="1.12-{host_platform()}">')
    assert (
        f'<SystemProperties defaultMachineFolder="{tmp_path}/VirtualBox VMs" defaultHardDiskFormat="VDI" '
        'VRDEAuthLibrary="VBoxAuth" webServiceAuthLibrary="VBoxAuth" LogHistoryCount="3" proxyMode="0" '
        'exclusiveHwVirt="true"/>' in text
    )
    assert '<DHCPServer networkName="HostInterfaceNetworking-vboxnet0" IPAddress="192.168.56.100"' in text
    assert "<MachineRegistry/>" in text and "<USBDeviceFilters/>" in text
    # VirtualBox-settings.xsd requires Updates (with its Host) in Global; VirtualBox writes the defaults
    assert '<Updates enabled="true">\n      <Host enabled="true" channel="1" checkFreqSec="86400" ' \
           'checkCount="0"/>\n    </Updates>\n    <SystemProperties' in text
    assert MainFile.load(tmp_path / "VirtualBox.xml").settings == mf.settings
    # a load-change-save keeps it as it is
    loaded = MainFile.load(tmp_path / "VirtualBox.xml")
    loaded.settings.system_properties.log_history_count = 5
    loaded.save()
    assert ('<Updates enabled="true">\n      <Host enabled="true" channel="1"'
            in (tmp_path / "VirtualBox.xml").read_text())


def test_second_save_keeps_previous_as_prev(tmp_path):
    mf = MachineFile.new(tmp_path / "a.vbox", MachineSettings(name="a"))
    mf.save()
    first = (tmp_path / "a.vbox").read_bytes()
    mf.settings.hardware.memory_mb = 256
    mf.save()
    assert (tmp_path / "a.vbox-prev").read_bytes() == first
    assert b'RAMSize="256"' in (tmp_path / "a.vbox").read_bytes()
    assert not (tmp_path / "a.vbox-tmp").exists()


def test_save_to_new_path_for_rename(tmp_path):
    (tmp_path / "b").mkdir()
    mf = MachineFile.new(tmp_path / "a.vbox", MachineSettings(name="a", state_file=str(tmp_path / "s.sav")))
    mf.save()
    mf.settings.name = "b"
    mf.settings.state_file = str(tmp_path / "b" / "s.sav")
    mf.save(tmp_path / "b" / "b.vbox")
    assert mf.path == tmp_path / "b" / "b.vbox"
    assert 'stateFile="s.sav"' in mf.path.read_text()
    assert MachineFile.load(mf.path).settings.name == "b"
    assert MachineFile.load(tmp_path / "a.vbox").settings.name == "a"


def test_snapshot_tree_written_and_read(tmp_path):
    from settings.models import Snapshot
    root = Snapshot(uuid=uuid.uuid4(), name="root", description="d",
                    time_stamp=datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC),
                    state_file=str(tmp_path / "Snapshots" / "x.sav"))
    child = Snapshot(uuid=uuid.uuid4(), name="child")
    root.children.append(child)
    s = MachineSettings(name="a", snapshot=root, current_snapshot=child.uuid)
    mf = MachineFile.new(tmp_path / "a.vbox", s)
    mf.save()
    text = mf.path.read_text()
    assert 'name="root" timeStamp="2024-02-03T04:05:06Z" stateFile="Snapshots/x.sav"' in text
    assert MachineFile.load(mf.path).settings == s
    # deleting the child snapshot removes its element
    root.children.clear()
    mf.settings.current_snapshot = root.uuid
    mf.save()
    assert 'name="child"' not in mf.path.read_text()
    assert MachineFile.load(mf.path).settings.snapshots()[0].children == []
