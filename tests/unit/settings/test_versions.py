"""Format versions: parsing, keeping the read version, bumping with a one-time backup, layout moves."""

from __future__ import annotations

import pytest
from lxml import etree

from settings.errors import SettingsError
from settings.machine_file import MachineFile
from settings.main_file import MainFile
from settings.version import host_platform, parse_version
from settings.xmlio import backup_name

from . import samples

NS = {"v": "http://www.virtualbox.org/"}


@pytest.mark.parametrize("text,minor,future", [
    ("1.12-linux", 12, False), ("1.3-windows", 3, False), ("1.20-macosx", 20, False),
    ("1.21-linux", 20, True), ("2.0-linux", 20, True), ("1.19", 19, False)])
def test_parse_version(text, minor, future):
    v = parse_version(text)
    assert (v.minor, v.future, v.full) == (minor, future, text)


@pytest.mark.parametrize("text", ["1.2-linux", "0.9-linux", "garbage", "", "1.x-linux", "1-linux"])
def test_unhandleable_versions(text):
    assert parse_version(text) is None


def test_backup_names():
    assert backup_name("/h/VirtualBox.xml", "1.12-linux").name == "VirtualBox-1.12-linux.xml"
    assert backup_name("/m/MyVM.vbox", "1.16-linux").name == "MyVM-1.16-linux.vbox"
    assert backup_name("/m/Old.xml", "1.7-linux").name == "Old-1.7-linux.xml"


def _write(tmp_path, v):
    p = tmp_path / "web" / "web.vbox"
    p.parent.mkdir(exist_ok=True)
    text = samples.machine_xml(v)
    p.write_text(text)
    return p, text


def test_existing_file_keeps_its_version(tmp_path):
    p, _ = _write(tmp_path, 12)
    mf = MachineFile.load(p)
    mf.settings.hardware.memory_mb = 300
    mf.save()
    assert mf.version.full == "1.12-linux"
    assert not list(tmp_path.glob("web/web-1.*"))


def test_bump_to_1_20_backs_up_once_and_moves_the_layout(tmp_path):
    p, original = _write(tmp_path, 12)
    mf = MachineFile.load(p)
    mf.settings.hardware.graphics_controller = "QemuRamFB"
    mf.save()
    assert mf.version.full == f"1.20-{host_platform()}"
    backup = tmp_path / "web" / "web-1.12-linux.vbox"
    assert backup.read_text() == original
    tree = etree.parse(str(p))
    m = "/v:VirtualBox/v:Machine"
    assert tree.xpath(f"{m}/v:Platform[@architecture='x86']/v:Chipset[@type='ICH9']", namespaces=NS)
    assert tree.xpath(f"{m}/v:Platform/v:CPU[@count='2'][@executionCap='80']", namespaces=NS)
    assert tree.xpath(f"{m}/v:Platform/v:x86/v:HPET[@enabled='true']", namespaces=NS)
    assert tree.xpath(f"{m}/v:Platform/v:x86/v:CPU/v:CpuIdTree/v:CpuIdLeaf", namespaces=NS)
    assert not tree.xpath(f"{m}/v:Hardware/v:CPU", namespaces=NS)
    assert not tree.xpath("//v:BIOS", namespaces=NS)
    assert tree.xpath(f"{m}/v:Hardware/v:Firmware/v:Logo", namespaces=NS)
    assert tree.xpath(f"{m}/v:Hardware/v:StorageControllers/v:StorageController", namespaces=NS)
    assert not tree.xpath(f"{m}/v:StorageControllers", namespaces=NS)
    assert tree.xpath(f"{m}/v:Hardware/v:UART/v:Port[@IOAddress='0x3f8']", namespaces=NS)
    # snapshots move along
    assert len(tree.xpath("//v:Snapshot/v:Platform/v:x86/v:CPU", namespaces=NS)) == 2
    again = MachineFile.load(p).settings
    assert again == mf.settings
    # a second save does not back up again, even after the backup is gone
    backup.unlink()
    mf.settings.hardware.memory_mb = 640
    mf.save()
    assert not backup.exists()


def test_bump_to_1_17_moves_storage_controllers_into_hardware(tmp_path):
    p, original = _write(tmp_path, 15)
    mf = MachineFile.load(p)
    mf.settings.hardware.nested_hw_virt = True
    mf.save()
    assert mf.version.minor == 17
    assert (tmp_path / "web" / "web-1.15-linux.vbox").read_text() == original
    tree = etree.parse(str(p))
    assert not tree.xpath("/v:VirtualBox/v:Machine/v:StorageControllers", namespaces=NS)
    assert len(tree.xpath("//v:Hardware/v:StorageControllers", namespaces=NS)) == 3
    assert MachineFile.load(p).settings == mf.settings


def test_future_version_loads_best_effort_and_is_written_as_newest(tmp_path):
    p, _ = _write(tmp_path, 20)
    p.write_text(p.read_text().replace('version="1.20-linux"', 'version="1.23-linux"'))
    mf = MachineFile.load(p)
    assert mf.version.future and mf.settings.hardware.cpu_count == 2
    mf.save()
    assert mf.version.full == f"1.20-{host_platform()}"
    assert not list(tmp_path.glob("web/web-1.*"))


def test_unknown_version_fails_with_virtualbox_message(tmp_path):
    p, _ = _write(tmp_path, 12)
    p.write_text(p.read_text().replace('version="1.12-linux"', 'version="1.2-linux"'))
    with pytest.raises(SettingsError) as e:
        MachineFile.load(p)
    assert e.value.problem == "Cannot handle settings version '1.2-linux'"
    assert e.value.path == str(p) and e.value.line == 8


def test_new_files_versions(tmp_path):
    from settings.models import MachineSettings
    mf = MachineFile.new(tmp_path / "a" / "a.vbox", MachineSettings(name="a"))
    (tmp_path / "a").mkdir()
    mf.save()
    assert etree.parse(str(mf.path)).getroot().get("version") == f"1.19-{host_platform()}"
    g = MainFile.new(tmp_path / "VirtualBox.xml")
    g.save()
    assert etree.parse(str(g.path)).getroot().get("version") == f"1.12-{host_platform()}"


def _machine(**hw):
    from settings.models import Hardware, MachineSettings
    return MachineSettings(name="m",
                           hardware=Hardware(**({"paravirt_provider": "Legacy", "long_mode": None} | hw)))


@pytest.mark.parametrize("change,minor", [
    ({}, 7),
    ({"firmware": "EFI"}, 9),
    ({"hpet": True}, 10),
    ({"cpu_execution_cap": 50}, 11),
    ({"chipset": "ICH9"}, 11),
    ({"graphics_controller": "VMSVGA"}, 14),
    ({"long_mode": True}, 14),
    ({"paravirt_provider": "KVM"}, 15),
    ({"x2apic": True}, 16),
    ({"cpu_profile": "Intel 80386"}, 16),
    ({"nested_hw_virt": True}, 17),
    ({"graphics_controller": "QemuRamFB"}, 20),
])
def test_required_versions_follow_virtualbox(change, minor):
    from settings.bump import required_minor
    assert required_minor(_machine(**change)) == minor


def test_required_versions_for_devices_and_registry():
    import uuid

    from settings.bump import required_minor
    from settings.models import AttachedDevice, Medium, StorageController
    m = _machine()
    # before 1.15 AHCI ports were hot-pluggable and nothing else was: only a difference needs 1.15
    m.hardware.storage_controllers = [StorageController(name="SATA", bus="SATA", devices=[
        AttachedDevice(type="HardDisk", port=0, device=0, hotpluggable=True)])]
    assert required_minor(m) == 10  # host I/O cache off on a used controller
    m.hardware.storage_controllers[0].devices[0].hotpluggable = False
    assert required_minor(m) == 15
    m.hardware.storage_controllers = [StorageController(name="NVMe", bus="PCIe")]
    assert required_minor(m) == 16
    m.hardware.storage_controllers = []
    m.media_registry.hard_disks.append(Medium(uuid=uuid.uuid4(), location="/x.vdi"))
    assert required_minor(m) == 11  # per-machine media registries came with 4.0
    m.groups = ["/g"]
    assert required_minor(m) == 13
    assert required_minor(_machine(), read_minor=8) == 9
