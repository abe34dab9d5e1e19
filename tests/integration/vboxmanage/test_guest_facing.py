"""guestproperty and sharedfolder through the real CLI and service on a powered-off machine:
outputs, flags, errors, what lands in the .vbox and what showvminfo lists."""

import re
import subprocess
import time

from lxml import etree

from .test_cli import create


def _vbox(cfg: str) -> etree._Element:
    return etree.parse(cfg).getroot()


def _find(root, tag: str) -> list:
    return [e for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == tag]


def test_guestproperty_set_get_flags_enumerate_delete(vbm):
    _, cfg = create(vbm)
    assert vbm("guestproperty", "get", "vm1", "/Test/A") == (0, "No value set!\n", "")
    assert vbm("guestproperty", "set", "vm1", "/Test/A", "hello world") == (0, "", "")
    assert vbm("guestproperty", "get", "vm1", "/Test/A") == (0, "Value: hello world\n", "")
    assert vbm("guestproperty", "set", "vm1", "/Test/B", "2", "--flags", "rdonlyguest") == (0, "", "")
    code, out, _ = vbm("guestproperty", "get", "vm1", "/Test/B", "--verbose")
    assert code == 0 and re.fullmatch(r"Value: 2\nTimestamp: \d{19}\nFlags: RDONLYGUEST\n", out), out
    # kept in the .vbox as VirtualBox writes them
    props = {p.get("name"): p for p in _find(_vbox(cfg), "GuestProperty")}
    assert props["/Test/A"].get("value") == "hello world" and props["/Test/A"].get("flags") == ""
    assert props["/Test/B"].get("flags") == "RDONLYGUEST" and int(props["/Test/B"].get("timestamp")) > 0
    # the default table and the old format, sorted by name, filtered by patterns
    code, out, _ = vbm("guestproperty", "enumerate", "vm1")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert re.fullmatch(r"/Test/A = 'hello world' +@ \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[0]), lines
    assert re.fullmatch(r"/Test/B = '2' +@ \S+Z RDONLYGUEST", lines[1]), lines
    code, out, _ = vbm("guestproperty", "enumerate", "vm1", "--old-format", "--patterns", "*B")
    assert code == 0 and re.fullmatch(
        r"Name: /Test/B, value: 2, timestamp: \d+, flags: RDONLYGUEST\n", out
    ), out
    assert vbm("guestproperty", "enumerate", "vm1", "/Nothing/*") == (0, "No properties found.\n", "")
    # flags the host cannot write past, bad flags
    assert vbm("guestproperty", "set", "vm1", "/Test/C", "x", "--flags", "RDONLYHOST")[0] == 0
    code, _, err = vbm("guestproperty", "set", "vm1", "/Test/C", "y")
    assert code == 1 and "The property '/Test/C' cannot be changed by the host" in err
    assert "E_ACCESSDENIED" in err
    code, _, err = vbm("guestproperty", "set", "vm1", "/Test/D", "x", "--flags", "BOGUS")
    assert code == 1 and "Invalid guest property flag 'BOGUS'" in err
    # transient ones live only while the VM runs: never written to the file
    assert vbm("guestproperty", "set", "vm1", "/Test/T", "t", "--flags", "TRANSRESET")[0] == 0
    assert "/Test/T" not in {p.get("name") for p in _find(_vbox(cfg), "GuestProperty")}
    assert vbm("guestproperty", "delete", "vm1", "/Test/A") == (0, "", "")
    assert vbm("guestproperty", "unset", "vm1", "/Test/B") == (0, "", "")
    assert vbm("guestproperty", "get", "vm1", "/Test/A") == (0, "No value set!\n", "")
    assert {p.get("name") for p in _find(_vbox(cfg), "GuestProperty")} == {"/Test/C"}
    code, _, err = vbm("guestproperty", "get", "vm1")
    assert code == 2 and "Incorrect parameters" in err


def test_guestproperty_wait_times_out_and_sees_a_change(vbm):
    create(vbm)
    t0 = time.monotonic()
    code, out, err = vbm("guestproperty", "wait", "vm1", "/Wait/*", "--timeout", "300", "--fail-on-timeout")
    assert (code, out) == (2, "") and "Time out or interruption while waiting for a notification." in err
    assert vbm("guestproperty", "wait", "vm1", "/Wait/*", "--timeout", "200")[0] == 0
    assert time.monotonic() - t0 < 60
    waiter = subprocess.Popen([vbm.world.python, "-m", "frontends.vboxmanage.main", "guestproperty",
                               "wait", "vm1",
                               "/Wait/*", "--timeout", "60000"], cwd=vbm.home, env=vbm.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = ""
        for _ in range(100):  # the waiter's listener must be registered before the change counts
            time.sleep(0.3)
            vbm("guestproperty", "set", "vm1", "/Other/X", "1", check=0)
            vbm("guestproperty", "set", "vm1", "/Wait/Go", "now", check=0)
            if waiter.poll() is not None:
                break
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0, err
    assert out == "Name: /Wait/Go, value: now, flags: \n"


def test_sharedfolder_add_remove_persisted_and_shown(vbm, tmp_path):
    _, cfg = create(vbm)
    share = tmp_path / "share"
    share.mkdir()
    assert vbm("sharedfolder", "add", "vm1", "--name", "vagrant", "--hostpath", str(share)) == (0, "", "")
    assert vbm("sharedfolder", "add", "vm1", "--name=ro", f"--hostpath={share}/", "--readonly", "--automount",
               "--auto-mount-point", "/mnt/ro") == (0, "", "")
    folders = _find(_vbox(cfg), "SharedFolder")
    assert [dict(f.attrib) for f in folders] == [
        {"name": "vagrant", "hostPath": str(share), "writable": "true", "autoMount": "false"},
        {"name": "ro", "hostPath": str(share), "writable": "false", "autoMount": "true",
         "autoMountPoint": "/mnt/ro"}]
    info = vbm.machinereadable("vm1")
    assert info["SharedFolderNameMachineMapping1"] == "vagrant"
    assert info["SharedFolderPathMachineMapping1"] == str(share)
    assert info["SharedFolderNameMachineMapping2"] == "ro"
    _, human, _ = vbm("showvminfo", "vm1", check=0)
    assert (f"Shared folders:              \n\nName: 'vagrant', Host path: '{share}' (machine "
            f"mapping), writable\n"
            f"Name: 'ro', Host path: '{share}' (machine mapping), readonly, auto-mount, mount-point: "
            f"'/mnt/ro'\n\n"
            ) in human
    code, _, err = vbm("sharedfolder", "add", "vm1", "--name", "vagrant", "--hostpath", str(share))
    assert (code == 1 and "Shared folder named 'vagrant' already exists" in err
            and "VBOX_E_OBJECT_IN_USE" in err)
    code, _, err = vbm("sharedfolder", "add", "vm1", "--name", "gone", "--hostpath",
                       str(tmp_path / "missing"))
    assert code == 1 and "does not exist on the host" in err
    code, _, err = vbm("sharedfolder", "add", "vm1", "--name", "t", "--hostpath", str(share), "--transient")
    assert code == 1 and "Machine 'vm1' is not currently running." in err
    code, _, err = vbm("sharedfolder", "add", "vm1", "--hostpath", str(share))
    assert code == 2 and "No shared folder name (--name) was given" in err
    assert vbm("sharedfolder", "remove", "vm1", "--name", "vagrant") == (0, "", "")
    code, _, err = vbm("sharedfolder", "remove", "vm1", "--name", "vagrant")
    assert code == 1 and "Could not find a shared folder named 'vagrant'." in err
    assert [f.get("name") for f in _find(_vbox(cfg), "SharedFolder")] == ["ro"]
    assert vbm("sharedfolder", "remove", "vm1", "--name", "ro") == (0, "", "")
    assert _find(_vbox(cfg), "SharedFolders") == []
    _, human, _ = vbm("showvminfo", "vm1", check=0)
    assert "Shared folders:              <none>\n" in human
