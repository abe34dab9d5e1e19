"""list / showmediuminfo / snapshot list layouts on plain data."""

from frontends.vboxmanage import render_list
from frontends.vboxmanage.render_snapshot import snapshot_human, snapshot_machine_readable

from .samples import DISK, medium


def test_list_vms_line_format():
    assert render_list.vms([("vm 1", "aaaa"), ("b", "bbbb")]) == '"vm 1" {aaaa}\n"b" {bbbb}\n'
    assert render_list.vms([]) == ""


def test_list_hdds_depth_first_with_differencing_child():
    child = medium(uuid="c", parent=DISK, location="/h/Snapshots/{c}.vdi", logical_size=10 << 30)
    text = render_list.media([medium(children=[child])])
    assert text == (
        f"UUID:           {DISK}\nParent UUID:    base\nState:          created\nType:           "
        f"normal (base)\n"
        "Location:       /h/disk.vdi\nStorage format: VDI\nCapacity:       10240 MBytes\nEncryption:     "
        "disabled\n\n"
        f"UUID:           c\nParent UUID:    {DISK}\nState:          created\nType:           normal "
        f"(differencing)\n"
        "Location:       /h/Snapshots/{c}.vdi\nStorage format: VDI\nCapacity:       10240 MBytes\n"
        "Encryption:     disabled\n\n")


def test_showmediuminfo_long_form():
    data = medium(description="my disk", in_use=[("vm1", "u1", [("s1", "x1")]), ("vm2", "u2", [])],
                  child_ids=["k1", "k2"], type=1)
    assert render_list.medium_info(data) == (
        f"UUID:           {DISK}\nParent UUID:    base\nState:          created\nDescription:    my disk\n"
        "Type:           immutable\nLocation:       /h/disk.vdi\nStorage format: VDI\n"
        "Format variant: dynamic default\nCapacity:       10240 MBytes\nSize on disk:   2 MBytes\n"
        "Encryption:     disabled\nIn use by VMs:  vm1 (UUID: u1) [s1 (UUID: x1)]\n                vm2 "
        "(UUID: u2)\n"
        "Child UUIDs:    k1\n                k2\n")


def test_format_variants():
    assert render_list.variant_text(0x10000) == "fixed default"
    assert render_list.variant_text(0x1) == "dynamic split2G"
    assert render_list.variant_text(0x20000) == "differencing default"
    assert render_list.variant_text(0x100) == "dynamic unknown"


def test_ostypes_71_layout():
    t = {"id": "Ubuntu_64", "description": "Ubuntu (64-bit)", "family_id": "Linux", "family_desc": "Linux",
         "subtype": "", "arch": 1, "is64": True}
    assert render_list.ostypes([t, dict(t, id="DOS", description="DOS", is64=False, subtype="Other")],
                               v71=True) == (
        "Supported guest OS types:\n\nID / Description: Ubuntu_64 -- Ubuntu (64-bit)\n"
        "Family:           Linux (Linux)\nArchitecture:     x86 (64-bit)\n\n"
        "ID / Description: DOS -- DOS\nFamily:           Linux / Other (Linux)\nArchitecture:     x86\n\n")
    assert render_list.ostypes_long([t], v71=True) == (
        "Supported guest OS types:\n\nID:               Ubuntu_64\nDescription:      Ubuntu (64-bit)\n"
        "Family ID:        Linux\nFamily Desc:      Linux\nArchitecture:     x86\n64 bit:           true\n\n")


def test_ostypes_70_layout():
    t = {"id": "Debian_64", "description": "Debian (64-bit)", "family_id": "Linux", "family_desc": "Linux",
         "subtype": "Debian", "arch": 1, "is64": True}
    expected = ("ID:          Debian_64\nDescription: Debian (64-bit)\nFamily ID:   Linux\nFamily "
                "Desc: Linux\n"
                "64 bit:      true\n\n")
    assert render_list.ostypes([t], v71=False) == expected
    assert render_list.ostypes_long([t], v71=False) == expected


def test_hostinfo_and_time():
    h = {"time": render_list.host_time(1714566896789), "online_count": 2, "count": 2, "online_cores": 2,
         "cores": 2, "features": {0: True, 1: True}, "cpus": [(2400, "Xeon"), (0, "Xeon")], "memory": 4096,
         "memory_available": 1000, "os": "Linux", "os_version": "6.1"}
    text = render_list.hostinfo(h)
    assert text.startswith("Host Information:\n\nHost time: 2024-05-01T12:34:56.789000000Z\n")
    assert "Processor supports HW virtualization: yes\nProcessor supports PAE: yes\n" in text
    assert "Processor supports long mode: no\n" in text
    assert "Processor#0 speed: 2400 MHz\nProcessor#0 description: Xeon\nProcessor#1 speed: unknown\n" in text
    assert text.endswith("Memory size: 4096 MByte\nMemory available: 1000 MByte\nOperating system: Linux\n"
                         "Operating system version: 6.1\n")


def test_systemproperties_column():
    rows = [("API version:" + " " * 21, "7_1"), ("Host platform properties:", ""), ("", "")]
    assert (render_list.systemproperties(rows)
            == "API version:" + " " * 21 + "7_1\nHost platform properties:\n\n")


TREE = {"name": "s1", "uuid": "u1", "description": "first", "children": [
    {"name": "s2", "uuid": "u2", "description": "", "children": [
        {"name": "s3", "uuid": "u3", "description": "two\nlines", "children": []}]},
    {"name": "s4", "uuid": "u4", "description": "", "children": []}]}


def test_snapshot_list_human():
    # showSnapshots prints descriptions in every human mode; multi-line ones after a bare label
    assert snapshot_human(TREE, "u3") == (
        "   Name: s1 (UUID: u1)\n   Description: first\n      Name: s2 (UUID: u2)\n"
        "         Name: s3 (UUID: u3) *\n         Description:\ntwo\nlines\n      Name: s4 (UUID: u4)\n")


def test_snapshot_list_machine_readable():
    assert snapshot_machine_readable(TREE, "u3") == (
        'SnapshotName="s1"\nSnapshotUUID="u1"\nSnapshotDescription="first"\n'
        'SnapshotName-1="s2"\nSnapshotUUID-1="u2"\n'
        'SnapshotName-1-1="s3"\nSnapshotUUID-1-1="u3"\nSnapshotDescription-1-1="two\nlines"\n'
        'CurrentSnapshotName="s3"\nCurrentSnapshotUUID="u3"\nCurrentSnapshotNode="SnapshotName-1-1"\n'
        'SnapshotName-2="s4"\nSnapshotUUID-2="u4"\n')
