"""Bad input: every failure names file, line and problem, and the file is left untouched."""

from __future__ import annotations

import pytest

from settings.errors import SettingsError
from settings.machine_file import MachineFile
from settings.main_file import MainFile

from . import samples

GOOD_MACHINE = samples.machine_xml(19)


def _replace(text, old, new):
    assert old in text
    return text.replace(old, new, 1)


CASES = [
    # name, loader, text, expected line, expected problem (substring)
    ("malformed", MachineFile, _replace(GOOD_MACHINE, "</Description>", "</Descr>"), 11,
     "Opening and ending tag mismatch"),
    ("truncated", MachineFile, GOOD_MACHINE[: GOOD_MACHINE.index("</VirtualBox>")], None,
     "Premature end of data in tag VirtualBox"),
    ("wrong root", MachineFile, _replace(_replace(GOOD_MACHINE, "<VirtualBox xmlns", "<VirtualBoxX xmlns"),
                                         "</VirtualBox>", "</VirtualBoxX>"), 8,
     'Root element in VirtualBox settings files must be "VirtualBox"'),
    ("no version", MachineFile, _replace(GOOD_MACHINE, ' version="1.19-linux"', ""), 8,
     "Required VirtualBox/@version attribute is missing"),
    ("unknown version", MachineFile, _replace(GOOD_MACHINE, "1.19-linux", "abc"), 8,
     "Cannot handle settings version 'abc'"),
    ("bad machine uuid", MachineFile, _replace(GOOD_MACHINE, samples.VM_UUID, "not-a-uuid"), 9,
     'UUID "{not-a-uuid}" has invalid format'),
    ("zero uuid", MachineFile,
     _replace(GOOD_MACHINE, samples.VM_UUID, "00000000-0000-0000-0000-000000000000"),
     9, "has zero format"),
    ("missing name", MachineFile, _replace(GOOD_MACHINE, ' name="web &amp; db"', ""), 9,
     "Required Machine/@name attribute is missing"),
    ("missing location", MachineFile, _replace(GOOD_MACHINE, ' location="web.vdi"', ""), 14,
     "Required HardDisk/@location attribute is missing"),
    ("bad disk uuid", MachineFile, _replace(GOOD_MACHINE, f'"{{{samples.DISK_UUID}}}"', '"{1234}"'), 14,
     'UUID "{1234}" has invalid format'),
    ("bad number", MachineFile, _replace(GOOD_MACHINE, 'RAMSize="1024"', 'RAMSize="lots"'), None,
     "'RAMSize' of element 'Memory' has invalid value 'lots'"),
    ("bad timestamp", MachineFile,
     _replace(GOOD_MACHINE, "2024-05-01T10:00:00Z", "2024-05-01T10:00:00+02:00"),
     9, "Cannot parse ISO timestamp"),
    ("bad controller", MachineFile, _replace(GOOD_MACHINE, 'type="AHCI"', 'type="Quantum"'), None,
     "Invalid value 'Quantum' for StorageController/@type attribute"),
    ("dangling current snapshot", MachineFile,
     _replace(GOOD_MACHINE, f'currentSnapshot="{{{samples.SNAP2_UUID}}}"',
              'currentSnapshot="{11111111-2222-4333-8444-555555555555}"'), 9, "does not exist"),
    ("missing entry src", MainFile,
     _replace(samples.main_xml(12), ' src="/home/u/VirtualBox VMs/web/web.vbox"',
                                            ""), 14,
     "Required MachineEntry/@uuid or @src attribute is missing"),
    ("no global", MainFile, _replace(_replace(samples.main_xml(12), "<Global>", "<Globl>"),
                                     "</Global>", "</Globl>"), 8, "Required Global element is missing"),
]


@pytest.mark.parametrize("name,loader,text,line,problem", CASES, ids=[c[0] for c in CASES])
def test_bad_input_names_file_line_and_problem(tmp_path, name, loader, text, line, problem):
    p = tmp_path / ("VirtualBox.xml" if loader is MainFile else "web.vbox")
    p.write_text(text)
    before = p.read_bytes()
    with pytest.raises(SettingsError) as e:
        loader.load(p)
    err = e.value
    assert err.path == str(p)
    assert problem in err.problem
    assert str(p) in str(err)
    if line is not None:
        assert err.line == line
    assert err.line and err.line > 0
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == [p.name]


def test_message_format_is_virtualboxs(tmp_path):
    p = tmp_path / "web.vbox"
    p.write_text(_replace(GOOD_MACHINE, ' name="web &amp; db"', ""))
    with pytest.raises(SettingsError) as e:
        MachineFile.load(p)
    assert str(e.value) == f"Error in {p} (line 9) -- Required Machine/@name attribute is missing"


def test_malformed_xml_message_has_location(tmp_path):
    p = tmp_path / "VirtualBox.xml"
    p.write_text("<?xml version=\"1.0\"?>\n<VirtualBox>\n  <Global>\n</VirtualBox>\n")
    with pytest.raises(SettingsError) as e:
        MainFile.load(p)
    assert f"Location: '{p}', line 4" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(SettingsError) as e:
        MachineFile.load(tmp_path / "nope.vbox")
    assert "nope.vbox" in str(e.value)


def test_invalid_model_refuses_to_save_and_keeps_file(tmp_path):
    p = tmp_path / "web" / "web.vbox"
    p.parent.mkdir()
    p.write_text(GOOD_MACHINE)
    mf = MachineFile.load(p)
    mf.settings.hardware.storage_controllers[0].devices[0].port = 0
    mf.settings.hardware.network_adapters[0].__dict__["mac"] = "zz"  # bypass assignment validation
    with pytest.raises(SettingsError):
        mf.save()
    assert p.read_text() == GOOD_MACHINE


def test_missing_hardware_means_defaults(tmp_path):
    p = tmp_path / "m.vbox"
    p.write_text(samples.HEADER + '<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">\n'
                 f'  <Machine uuid="{{{samples.VM_UUID}}}" name="bare" '
                 f'lastStateChange="2024-01-01T00:00:00Z"/>\n'
                 '</VirtualBox>\n')
    mf = MachineFile.load(p)
    assert mf.settings.hardware.memory_mb == 128 and mf.settings.hardware.paravirt_provider == "Default"
    mf.settings.hardware.memory_mb = 256
    mf.save()
    assert MachineFile.load(p).settings.hardware.memory_mb == 256


@pytest.mark.parametrize("old,new,problem", [
    ('<Chipset type="ICH9"/>', '<Chipset type="ICH10"/>', "Invalid value 'ICH10' in Chipset/@type"),
    ('<HID Pointing="USBTablet"/>', '<HID Pointing="Trackball"/>',
     "Invalid value 'Trackball' in HID/Pointing/@type"),
    ('type="82540EM"', 'type="RTL8139"', "Invalid value 'RTL8139' in Adapter/@type attribute"),
    ('hostMode="HostPipe"', 'hostMode="Pipe"', "Invalid value 'Pipe' in UART/Port/@hostMode attribute"),
    (' IRQ="4" server="true"', ' server="true"', "Required UART/Port/@IRQ attribute is missing"),
    ('<Order position="2" device="DVD"/>', '<Order position="1" device="DVD"/>', "value is not unique"),
    ('<Order position="2" device="DVD"/>', '<Order position="2" device="Tape"/>',
     "Invalid value 'Tape' in Boot/Order/@device attribute"),
    ('<Paravirt provider="KVM"/>', '<Paravirt provider="Xen"/>', "Invalid value 'Xen' in Paravirt/@provider"),
])
def test_invalid_enumerations(tmp_path, old, new, problem):
    p = tmp_path / "web.vbox"
    p.write_text(GOOD_MACHINE.replace(old, new))
    with pytest.raises(SettingsError) as e:
        MachineFile.load(p)
    assert problem in e.value.problem and e.value.line
