"""The real CLI against the real service: exact output, streams and exit codes."""

import re

from vboxsvc.api import identity

PROGRESS = "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%\n"
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def create(vbm, name="vm1", *extra):
    code, out, err = vbm("createvm", "--name", name, "--register", *extra)
    assert (code, err) == (0, ""), err
    match = re.fullmatch(rf"Virtual machine '{re.escape(name)}' is created and registered.\nUUID: "
                         rf"({UUID_RE})\n"
                         r"Settings file: '(.*)'\n", out)
    assert match, out
    return match.group(1), match.group(2)


def test_createvm_list_and_showvminfo(vbm):
    uuid, path = create(vbm, "vm1", "--ostype", "Ubuntu_64")
    assert path == str(vbm.home / "VirtualBox VMs" / "vm1" / "vm1.vbox")
    assert vbm("list", "vms") == (0, f'"vm1" {{{uuid}}}\n', "")
    assert vbm("list", "runningvms") == (0, "", "")
    info = vbm.machinereadable("vm1")
    arch = ["platformArchitecture"] if identity.current().is_7_1 else []
    assert list(info)[:6] == ["name", "encryption", "groups", *arch, "ostype", "UUID", "CfgFile"][:6]
    assert ((info["name"], info["ostype"], info["UUID"], info["CfgFile"])
            == ("vm1", "Ubuntu (64-bit)", uuid, path))
    assert info["VMState"] == "poweroff" and isinstance(info["memory"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}000000", info["VMStateChangeTime"])
    code, out, err = vbm("showvminfo", uuid)
    assert code == 0 and out.startswith("Name:                        vm1\n") and err == ""
    assert f"UUID:                        {uuid}\n" in out


def test_createvm_without_register_then_registervm(vbm):
    code, out, _ = vbm("createvm", "--name", "loose")
    assert code == 0 and out.startswith("Virtual machine 'loose' is created.\nUUID: ")
    assert vbm("list", "vms") == (0, "", "")
    path = out.split("Settings file: '")[1].rstrip("'\n")
    assert vbm("registervm", path) == (0, "", "")
    assert vbm("list", "vms")[1].startswith('"loose" {')


def test_unknown_vm_error_block(vbm):
    code, out, err = vbm("showvminfo", "ghost")
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == "VBoxManage: error: Could not find a registered machine named 'ghost'"
    assert lines[1].startswith("VBoxManage: error: Details: code VBOX_E_OBJECT_NOT_FOUND "
                               "(0x80bb0001), component ")
    assert lines[2].startswith('VBoxManage: error: Context: "FindMachine(')


def test_modifyvm_both_spellings_and_boot_kernel(vbm, tmp_path):
    create(vbm)
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"\0")
    assert vbm("modifyvm", "vm1", "--memory", "256", "--cpus", "2", "--ostype", "Debian_64",
               "--cpu-execution-cap", "50", "--nestedpaging", "off", "--large-pages", "on",
               "--vtx-vpid", "off",
               "--acpi", "on", "--ioapic", "on", "--firmware", "efi", "--paravirtprovider", "kvm",
               "--boot1", "disk", "--boot2", "net", "--boot3", "none", "--boot4", "none",
               "--nic1", "nat", "--nic-type1", "virtio", "--macaddress1", "080027000001",
               "--cableconnected1", "on",
               "--uart1", "0x3F8", "4", "--uart-mode1", "file", str(tmp_path / "serial.log"),
               "--uarttype1", "16550A", "--description", "hello",
               "--boot-kernel", str(kernel), "--boot-cmdline", "console=ttyS0") == (0, "", "")
    info = vbm.machinereadable("vm1")
    assert (info["memory"], info["cpus"], info["cpuexecutioncap"]) == (256, 2, 50)
    assert (info["nestedpaging"], info["largepages"], info["vtxvpid"]) == ("off", "on", "off")
    assert (info["firmware"], info["paravirtprovider"], info["description"]) == ("EFI", "kvm", "hello")
    assert [info[f"boot{i}"] for i in range(1, 5)] == ["disk", "net", "none", "none"]
    assert (info["nic1"], info["nictype1"], info["macaddress1"], info["cableconnected1"]) == (
        "nat", "virtio", "080027000001", "on")
    assert (info["uart1"], info["uartmode1"], info["uarttype1"]) == (
        "0x03f8,4", f"file,{tmp_path / 'serial.log'}", "16550A")
    assert info["vboxpy-bootkernel"] == str(kernel) and info["vboxpy-bootcmdline"] == "console=ttyS0"
    assert vbm("getextradata", "vm1", "vboxpy/BootKernel") == (0, f"Value: {kernel}\n", "")
    code, out, _ = vbm("showvminfo", "vm1")
    assert f"Boot kernel:                 {kernel}\n" in out and "Memory size:                 256MB\n" in out


def test_modifyvm_usage_errors(vbm):
    create(vbm)
    code, out, err = vbm("modifyvm", "vm1", "--frobnicate", "1")
    assert code == 2 and "VBoxManage: error: Unknown option: --frobnicate\n" in err and out == ""
    code, _, err = vbm("modifyvm", "vm1", "--acpi", "maybe")
    assert code == 2 and "error:" in err
    assert vbm.machinereadable("vm1")["acpi"] == "on"


def test_media_lifecycle_and_attach(vbm, tmp_path):
    create(vbm)
    disk = tmp_path / "disk1"
    code, out, err = vbm("createmedium", "disk", "--filename", str(disk), "--size", "16")
    assert code == 0 and err == PROGRESS
    match = re.fullmatch(rf"Medium created. UUID: ({UUID_RE})\n", out)
    assert match
    disk_uuid = match.group(1)
    assert (tmp_path / "disk1.vdi").exists()
    code, out, _ = vbm("showmediuminfo", str(tmp_path / "disk1.vdi"))
    assert code == 0 and out.startswith(f"UUID:           {disk_uuid}\nParent UUID:    base\nState:       "
                                        f"   created\n")
    assert "Capacity:       16 MBytes\n" in out and "Storage format: VDI\n" in out
    code, out, _ = vbm("list", "hdds")
    assert f"UUID:           {disk_uuid}\n" in out and "Type:           normal (base)\n" in out
    assert vbm("storagectl", "vm1", "--name", "SATA", "--add", "sata", "--portcount", "2") == (0, "", "")
    assert vbm("storageattach", "vm1", "--storagectl", "SATA", "--port", "0", "--device", "0",
               "--type", "hdd",
               "--medium", str(tmp_path / "disk1.vdi")) == (0, "", "")
    info = vbm.machinereadable("vm1")
    assert info["storagecontrollername0"] == "SATA" and info["storagecontrollertype0"] == "IntelAhci"
    assert info["SATA-0-0"] == str(tmp_path / "disk1.vdi") and info["SATA-ImageUUID-0-0"] == disk_uuid
    assert info["SATA-1-0"] == "none"
    code, _, err = vbm("closemedium", "disk", disk_uuid)
    assert code == 1 and "VBoxManage: error: " in err
    assert vbm("storageattach", "vm1", "--storagectl", "SATA", "--port", "0", "--device", "0",
               "--medium", "none") == (0, "", "")
    code, out, err = vbm("closemedium", "disk", disk_uuid, "--delete")
    assert (code, out, err) == (0, "", PROGRESS)
    assert not (tmp_path / "disk1.vdi").exists()


def test_extradata_global(vbm):
    assert vbm("setextradata", "global", "GUI/Test", "yes") == (0, "", "")
    assert vbm("getextradata", "global", "GUI/Test") == (0, "Value: yes\n", "")
    assert vbm("getextradata", "global", "enumerate") == (0, "Key: GUI/Test, Value: yes\n", "")
    assert vbm("setextradata", "global", "GUI/Test") == (0, "", "")
    assert vbm("getextradata", "global", "GUI/Test") == (0, "No value set!\n", "")


def test_setproperty_machinefolder(vbm, tmp_path):
    folder = tmp_path / "machines"
    assert vbm("setproperty", "machinefolder", str(folder)) == (0, "", "")
    code, out, _ = vbm("list", "systemproperties")
    assert code == 0 and f"Default machine folder:          {folder}\n" in out
    _, path = create(vbm, "vm2")
    assert path == str(folder / "vm2" / "vm2.vbox")
    code, _, err = vbm("setproperty", "nosuchprop", "1")
    assert code == 2 and "VBoxManage: error: Invalid parameter 'nosuchprop'" in err


def test_unregistervm_delete(vbm):
    _, path = create(vbm)
    code, out, err = vbm("unregistervm", "vm1", "--delete")
    assert (code, out, err) == (0, "", PROGRESS)
    assert vbm("list", "vms") == (0, "", "")
    import os
    assert not os.path.exists(path)


def test_controlvm_and_snapshot_on_powered_off_vm(vbm):
    create(vbm)
    assert vbm("controlvm", "vm1", "pause") == (
        1, "", "VBoxManage: error: Machine 'vm1' is not currently running.\n"
    )
    assert vbm("snapshot", "vm1", "list") == (1, "This machine does not have any snapshots\n", "")


def test_list_ostypes_hostinfo_and_json(vbm):
    code, out, _ = vbm("list", "ostypes")
    if identity.current().is_7_1:
        assert code == 0 and out.startswith("Supported guest OS types:\n\n")
        assert "ID / Description: Ubuntu_64 -- Ubuntu (64-bit)\n" in out
    else:
        assert code == 0 and out.startswith("ID:          Other\n")
        assert "ID:          Ubuntu_64\nDescription: Ubuntu (64-bit)\n" in out
    code, out, _ = vbm("list", "hostinfo")
    assert code == 0 and out.startswith("Host Information:\n\nHost time: ")
    assert re.search(r"^Processor supports HW virtualization: (yes|no)$", out, re.M)
    create(vbm)
    import json
    code, out, _ = vbm("list", "vms", "--json")
    assert code == 0 and json.loads(out)[0]["name"] == "vm1"


def test_clone_modify_diff_and_dvd(vbm, tmp_path):
    create(vbm)
    base = tmp_path / "base.vdi"
    vbm("createmedium", "--filename", str(base), "--size", "8", check=0)
    code, out, err = vbm("clonemedium", str(base), str(tmp_path / "copy.vdi"))
    assert code == 0 and err == PROGRESS
    assert re.fullmatch(rf"Clone medium created in format 'VDI'. UUID: {UUID_RE}\n", out)
    assert vbm("modifymedium", str(tmp_path / "copy.vdi"), "--description", "a copy") == (
        0, "Medium description has been changed.\n", "")
    code, out, _ = vbm("showmediuminfo", "disk", str(tmp_path / "copy.vdi"))
    assert "Description:    a copy\n" in out and "Capacity:       8 MBytes\n" in out
    code, out, err = vbm("modifymedium", str(tmp_path / "copy.vdi"), "--resize", "12")
    assert (code, out, err) == (0, "", PROGRESS)
    assert "Capacity:       12 MBytes\n" in vbm("showmediuminfo", str(tmp_path / "copy.vdi"))[1]
    code, out, _ = vbm("createmedium", "disk", "--filename", str(tmp_path / "child.vdi"),
                       "--diffparent", str(base))
    assert code == 0 and out.startswith("Medium created. UUID: ")
    listing = vbm("list", "hdds")[1]
    assert "Type:           normal (differencing)\n" in listing
    assert listing.index(str(base)) < listing.index(str(tmp_path / "child.vdi"))
    assert vbm("storagectl", "vm1", "--name", "IDE", "--add", "ide") == (0, "", "")
    assert vbm("storageattach", "vm1", "--storagectl", "IDE", "--port", "1", "--device", "0",
               "--type", "dvddrive",
               "--medium", "emptydrive") == (0, "", "")
    code, out, _ = vbm("showvminfo", "vm1", "--machinereadable")
    assert (
        '"IDE-0-0"="none"\n"IDE-0-1"="none"\n"IDE-1-0"="emptydrive"\n"IDE-IsEjected-1-0"="off"\n"IDE-1-1"="none"\n'
        in out
    )
    assert vbm("storagectl", "vm1", "--name", "IDE", "--remove") == (0, "", "")
    assert "storagecontrollername0" not in vbm("showvminfo", "vm1", "--machinereadable")[1]


def test_version_help_and_sorted_list(vbm):
    assert vbm("--version") == (0, identity.current().full + "\n", "")
    code, out, _ = vbm("--nologo", "list")
    assert code == 1 and out.startswith("Usage - List system information and configuration:")
    b, _ = create(vbm, "beta")
    a, _ = create(vbm, "Alpha")
    assert vbm("list", "vms", "--sorted") == (0, f'"Alpha" {{{a}}}\n"beta" {{{b}}}\n', "")
    assert vbm("list", "--long", "vms")[1].count("Name:                        ") == 2


def test_create_register_error_paths(vbm):
    _, path = create(vbm, "dup")
    code, out, err = vbm("createvm", "--name", "dup", "--register")
    assert (code, out) == (1, "")
    assert err.splitlines()[0] == f"VBoxManage: error: Machine settings file '{path}' already exists"
    assert err.splitlines()[1].startswith("VBoxManage: error: Details: code VBOX_E_FILE_ERROR (0x80bb0004)")
    code, _, err = vbm("createvm", "--name", "bad", "--ostype", "Nope_64")
    assert code == 1 and err.startswith("VBoxManage: error: ") and "Context: \"CreateMachine(" in err
    assert vbm("unregistervm", "dup") == (0, "", "")
    assert vbm("list", "vms") == (0, "", "")
    import os
    assert os.path.exists(path)
    assert vbm("registervm", path) == (0, "", "")
    code, _, err = vbm("registervm", path)
    assert code == 1 and "is already registered" in err.splitlines()[0]


def test_snapshots_and_clonevm(vbm, tmp_path):
    create(vbm, "sn")
    vbm("storagectl", "sn", "--name", "SATA", "--add", "sata", check=0)
    vbm("createmedium", "--filename", str(tmp_path / "sn.vdi"), "--size", "8", check=0)
    vbm("storageattach", "sn", "--storagectl", "SATA", "--port", "0", "--device", "0", "--type", "hdd",
        "--medium", str(tmp_path / "sn.vdi"), check=0)
    code, out, err = vbm("snapshot", "sn", "take", "s1", "--description", "first")
    assert code == 0 and err == PROGRESS
    s1 = re.fullmatch(rf"Snapshot taken. UUID: ({UUID_RE})\n", out).group(1)
    taken = vbm("snapshot", "sn", "take", "s2")[1]
    s2 = re.fullmatch(rf"Snapshot taken. UUID: ({UUID_RE})\n", taken).group(1)
    assert vbm("snapshot", "sn", "list") == (
        0, f"   Name: s1 (UUID: {s1})\n   Description: first\n      Name: s2 (UUID: {s2}) *\n", "")
    assert vbm("snapshot", "sn", "list", "--machinereadable") == (0, (
        f'SnapshotName="s1"\nSnapshotUUID="{s1}"\nSnapshotDescription="first"\nSnapshotName-1="s2"\n'
        f'SnapshotUUID-1="{s2}"\nCurrentSnapshotName="s2"\nCurrentSnapshotUUID="{s2}"\n'
        'CurrentSnapshotNode="SnapshotName-1"\n'), "")
    assert vbm("snapshot", "sn", "restore", "s1") == (0, f"Restoring snapshot 's1' ({s1})\n", PROGRESS)
    assert vbm("snapshot", "sn", "edit", "s2", "--name", "s2b") == (0, "", "")
    assert vbm("snapshot", "sn", "delete", "s2b") == (0, f"Deleting snapshot 's2b' ({s2})\n", PROGRESS)
    info = vbm.machinereadable("sn")
    assert (info["CurrentSnapshotName"], info["CurrentSnapshotNode"]) == ("s1", "SnapshotName")
    code, _, err = vbm("snapshot", "sn", "restore", "nosuch")
    assert code == 1 and err.startswith("VBoxManage: error: ")
    code, out, _ = vbm("snapshot", "sn", "take", "s1", "--uniquename", "Number")
    assert code == 0 and out.startswith("Snapshot taken. UUID: ")
    assert "   Name: s12 (UUID: " in vbm("snapshot", "sn", "list")[1]
    code, out, err = vbm("clonevm", "sn", "--register")
    assert (code, out, err) == (0, 'Machine has been successfully cloned as "sn Clone"\n', PROGRESS)
    assert vbm.machinereadable("sn Clone")["SATA-0-0"].startswith(
        str(tmp_path / "VirtualBox VMs" / "sn Clone")
    )
    code, _, _ = vbm("clonevm", "sn", "--name", "linked", "--snapshot", "s1", "--options", "link",
                     "--register")
    assert code == 0 and '"linked" {' in vbm("list", "vms")[1]
