"""`VBoxManage snapshot` and `clonevm` end to end: real CLI, real service, real images."""

from __future__ import annotations

import os
import re

from lxml import etree

NS = {"v": "http://www.virtualbox.org/"}
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def make_vm(vbm, name: str) -> str:
    vbm("createvm", "--name", name, "--ostype", "Linux_64", "--register", check=0)
    folder = str(vbm.home / "VirtualBox VMs" / name)
    vbm("storagectl", name, "--name", "SATA", "--add", "sata", check=0)
    disk = os.path.join(folder, f"{name}.vdi")
    vbm("createmedium", "disk", "--filename", disk, "--size", "8", check=0)
    vbm("storageattach", name, "--storagectl", "SATA", "--port", "0", "--type", "hdd", "--medium",
        disk, check=0)
    return folder


def test_snapshot_commands(vbm):
    folder = make_vm(vbm, "snapvm")
    code, out, err = vbm("snapshot", "snapvm", "list")
    assert (code, out) == (1, "This machine does not have any snapshots\n")
    _, out, err = vbm("snapshot", "snapvm", "take", "one", "--description", "first", check=0)
    m = re.fullmatch(rf"Snapshot taken\. UUID: ({UUID})\n", out)
    assert m, out
    one = m.group(1)
    assert "100%" in err
    _, out, _ = vbm("snapshot", "snapvm", "take", "two", check=0)
    two = re.search(UUID, out).group(0)
    _, out, _ = vbm("snapshot", "snapvm", "list", check=0)
    assert out == f"   Name: one (UUID: {one})\n   Description: first\n      Name: two (UUID: {two}) *\n"
    _, out, _ = vbm("snapshot", "snapvm", "list", "--machinereadable", check=0)
    assert out == (f'SnapshotName="one"\nSnapshotUUID="{one}"\nSnapshotDescription="first"\n'
                   f'SnapshotName-1="two"\nSnapshotUUID-1="{two}"\nCurrentSnapshotName="two"\n'
                   f'CurrentSnapshotUUID="{two}"\nCurrentSnapshotNode="SnapshotName-1"\n')
    vbm("snapshot", "snapvm", "edit", "two", "--name", "second", "--description", "2nd", check=0)
    _, out, _ = vbm("snapshot", "snapvm", "list", "--details", check=0)
    assert "Name: second (UUID: " in out and "Description: 2nd" in out
    _, out, _ = vbm("snapshot", "snapvm", "restore", "one", check=0)
    assert out == f"Restoring snapshot 'one' ({one})\n"
    info = vbm.machinereadable("snapvm")
    assert info["CurrentSnapshotName"] == "one"
    _, out, _ = vbm("snapshot", "snapvm", "delete", "second", check=0)
    assert out == f"Deleting snapshot 'second' ({two})\n"
    code, out, err = vbm("snapshot", "snapvm", "delete", "nosuch")
    assert code == 1 and "Could not find a snapshot named 'nosuch'" in err
    vbm("snapshot", "snapvm", "restorecurrent", check=0)
    root = etree.parse(os.path.join(folder, "snapvm.vbox")).getroot()
    mach = root.find("v:Machine", NS)
    assert mach.get("currentSnapshot") == "{" + one + "}" and mach.get("currentStateModified") == "false"
    assert [s.get("name") for s in mach.iter("{http://www.virtualbox.org/}Snapshot")] == ["one"]
    diffs = os.listdir(os.path.join(folder, "Snapshots"))
    assert len(diffs) == 1 and re.fullmatch(r"\{" + UUID + r"\}\.vdi", diffs[0])
    vbm("snapshot", "snapvm", "delete", "one", check=0)
    assert os.listdir(os.path.join(folder, "Snapshots")) == []
    assert "CurrentSnapshotName" not in vbm.machinereadable("snapvm")


def test_clonevm(vbm):
    make_vm(vbm, "orig")
    _, out, _ = vbm("clonevm", "orig", "--register", check=0)
    assert out == 'Machine has been successfully cloned as "orig Clone"\n'
    a, b = vbm.machinereadable("orig"), vbm.machinereadable("orig Clone")
    assert a["UUID"] != b["UUID"] and a["macaddress1"] != b["macaddress1"]
    assert b["SATA-0-0"].endswith("/orig Clone/orig Clone-disk1.vdi")
    vbm("snapshot", "orig", "take", "gold", check=0)
    _, out, _ = vbm("clonevm", "orig", "--snapshot", "gold", "--options", "link", "--name", "lnk",
                    "--options", "keepallmacs", "--register", check=0)
    c = vbm.machinereadable("lnk")
    assert c["macaddress1"] == a["macaddress1"]
    assert re.search(r"/lnk/Snapshots/\{" + UUID + r"\}\.vdi$", c["SATA-0-0"])
    code, _, err = vbm("clonevm", "orig", "--options", "link", "--name", "bad")
    assert code == 1 and "Linked clone can only be created from a snapshot" in err
