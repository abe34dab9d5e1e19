"""VMDK media and appliances through the real CLI and service: createmedium/clonemedium/
convertfromraw with VMDK, showmediuminfo of a VMDK, `import -n` (the lines Vagrant parses),
import of a hand-built OVA whose disk qemu-img made, export -> import round trips, import options,
and a tampered manifest."""

import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                reason="qemu-img (qemu-utils) not installed")

MiB = 1 << 20
OVF = """<?xml version="1.0"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
  <References><File ovf:id="file1" ovf:href="box-disk001.vmdk"/></References>
  <DiskSection><Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="{cap}" ovf:diskId="vmdisk1" ovf:fileRef="file1"
          ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="debian-12-box">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="96"><Info>The guest OS</Info></OperatingSystemSection>
    <VirtualHardwareSection><Info>Virtual hardware</Info>
      <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
            <rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID>
            <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:InstanceID>3</rasd:InstanceID>
            <rasd:ResourceSubType>PIIX4</rasd:ResourceSubType><rasd:ResourceType>5</rasd:ResourceType></Item>
      <Item><rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceSubType>AHCI</rasd:ResourceSubType>
            <rasd:ResourceType>20</rasd:ResourceType></Item>
      <Item><rasd:Connection>NAT</rasd:Connection><rasd:InstanceID>5</rasd:InstanceID>
            <rasd:ResourceSubType>E1000</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:HostResource>/disk/vmdisk1</rasd:HostResource>
            <rasd:InstanceID>6</rasd:InstanceID><rasd:Parent>4</rasd:Parent>
            <rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def _raw(path, size=32 * MiB):
    with open(path, "wb") as f:
        f.write(os.urandom(2 * MiB))
        f.seek(20 * MiB)
        f.write(b"marker" * 1000)
        f.truncate(size)
    return str(path)


@pytest.fixture
def box(tmp_path):
    """A Vagrant-style box folder and the same as an OVA: box.ovf + box-disk001.vmdk (made by qemu-img)."""
    d = tmp_path / "box"
    d.mkdir()
    raw = _raw(tmp_path / "disk.raw")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw,
                    str(d / "box-disk001.vmdk")], check=True)
    (d / "box.ovf").write_text(OVF.format(cap=32 * MiB))
    ova = tmp_path / "box.ova"
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as t:
        t.add(d / "box.ovf", "box.ovf")
        t.add(d / "box-disk001.vmdk", "box-disk001.vmdk")
    return {"dir": d, "ovf": str(d / "box.ovf"), "ova": str(ova), "raw": raw}


def _same(a, b, fmt_b="vmdk"):
    r = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", fmt_b, a, b],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _info_field(out: str, key: str) -> str:
    m = re.search(rf"^{re.escape(key)}:\s*(.*)$", out, re.M)
    assert m, out
    return m.group(1)


def test_vmdk_media_commands(vbm, tmp_path):
    for variant, shown in (("Standard", "dynamic default"), ("Fixed", "fixed default"),
                           ("Split2G", "dynamic split2G"), ("Stream", "dynamic streamOptimized")):
        path = str(tmp_path / f"m-{variant}")
        _, out, err = vbm("createmedium", "disk", "--filename", path, "--size", "16", "--format", "VMDK",
                          "--variant", variant, check=0)
        assert out.startswith("Medium created. UUID: ") and "100%" in err
        _, info, _ = vbm("showmediuminfo", path + ".vmdk", check=0)
        assert _info_field(info, "Storage format") == "VMDK"
        assert _info_field(info, "Format variant") == shown
        assert _info_field(info, "Capacity") == "16 MBytes"
        assert _info_field(info, "UUID") == out.split()[-1]
    split = tmp_path / "m-Split2G.vmdk"
    assert (tmp_path / "m-Split2G-s001.vmdk").exists()
    vbm("closemedium", str(split), "--delete", check=0)
    assert not split.exists() and not (tmp_path / "m-Split2G-s001.vmdk").exists()
    raw = _raw(tmp_path / "src.raw", 16 * MiB)
    _, out, _ = vbm("clonemedium", raw, str(tmp_path / "c.vmdk"), "--format", "VMDK", "--variant",
                    "Stream", check=0)
    assert out.startswith("Clone medium created in format 'VMDK'. UUID: ")
    _same(raw, str(tmp_path / "c.vmdk"))
    _, out, _ = vbm("clonemedium", str(tmp_path / "c.vmdk"), str(tmp_path / "d.vdi"), "--format",
                    "VDI", check=0)
    assert "format 'VDI'" in out
    _same(raw, str(tmp_path / "d.vdi"), "vdi")
    vbm("clonemedium", str(tmp_path / "d.vdi"), str(tmp_path / "e.vmdk"), "--format", "VMDK", check=0)
    subprocess.run(["qemu-img", "check", str(tmp_path / "e.vmdk")], check=True, capture_output=True)
    _same(raw, str(tmp_path / "e.vmdk"))


def test_convertfromraw_file_and_stdin(vbm, tmp_path):
    raw = _raw(tmp_path / "in.raw", 8 * MiB)
    code, out, err = vbm("convertfromraw", raw, str(tmp_path / "a.vmdk"), "--format", "VMDK", check=0)
    assert out == ""
    assert err.splitlines() == [f'Converting from raw image file="{raw}" to file="{tmp_path / "a.vmdk"}"...',
                                f"Creating dynamic image with size {8 * MiB} bytes (8MB)..."]
    _same(raw, str(tmp_path / "a.vmdk"))
    with open(raw, "rb") as stdin:     # docker-machine: the image arrives on stdin with its size
        r = subprocess.run([sys.executable, "-m", "frontends.vboxmanage.main", "convertfromraw", "stdin",
                            str(tmp_path / "b.vdi"), str(8 * MiB), "--uuid",
                            "5b0b3d84-0d73-4e5b-9f55-0a7d1d8e3c11"],
                           stdin=stdin, env=vbm.env, cwd=str(vbm.home), capture_output=True, text=True,
                           timeout=120)
    assert r.returncode == 0, r.stderr
    _same(raw, str(tmp_path / "b.vdi"), "vdi")
    _, info, _ = vbm("showmediuminfo", str(tmp_path / "b.vdi"), check=0)
    assert _info_field(info, "UUID") == "5b0b3d84-0d73-4e5b-9f55-0a7d1d8e3c11"
    _, hdds, _ = vbm("list", "hdds", check=0)
    assert "a.vmdk" not in hdds and "in.raw" not in hdds          # converting registers nothing
    odd = tmp_path / "odd.raw"
    odd.write_bytes(b"x" * 1000)
    code, _, err = vbm("convertfromraw", str(odd), str(tmp_path / "odd.vdi"))
    assert code == 1 and "not aligned on a sector boundary" in err and not (tmp_path / "odd.vdi").exists()
    code, _, err = vbm("convertfromraw", "stdin", str(tmp_path / "x.vdi"))
    assert code == 2 and "Incorrect number of parameters" in err


def test_import_dry_run_lists_what_vagrant_parses(vbm, box):
    code, out, err = vbm("import", "-n", box["ovf"], check=0)
    assert f"Interpreting {box['ovf']}...\nOK.\n" in err and "100%" in err
    folder = str(vbm.home / "VirtualBox VMs")
    assert out.splitlines()[:2] == [
        "Disks:",
        f"  vmdisk1\t{32 * MiB}\t-1\thttp://www.vmware.com/interfaces/"
        "specifications/vmdk.html#streamOptimized\tbox-disk001.vmdk\t-1\t-1\t",
    ]
    assert ' 0: Suggested OS type: "Debian_64"' in out
    assert re.search(r'Suggested VM name "(.+?)"', out).group(1) == "debian-12-box"
    settings = re.search(r'Suggested VM settings file name "(.+?)"', out).group(1)
    assert settings == f"{folder}/debian-12-box/debian-12-box.vbox"
    assert f' 4: Suggested VM base folder "{folder}"' in out
    assert " 5: Number of CPUs: 1\n" in out and " 6: Guest memory: 512 MB\n" in out
    assert " 7: Network adapter: orig NAT, config 3, extra type=NAT\n" in out
    assert " 8: IDE controller, type PIIX4\n" in out and " 9: SATA controller, type AHCI\n" in out
    m = re.search(r"(\d+): Hard disk image: source image=.+, target path=(.+),", out)
    assert m.groups() == ("10", f"{folder}/debian-12-box/box-disk001.vmdk")
    assert "controller=9;channel=0" in out
    _, vms, _ = vbm("list", "vms", check=0)
    assert vms == ""                      # a dry run imports nothing
    assert not os.path.exists(os.path.dirname(settings))


def test_import_ova_as_vagrant_does_then_export_and_import_back(vbm, box, tmp_path):
    folder = vbm.home / "VirtualBox VMs"
    disk = folder / "vm1" / "box-disk001.vmdk"
    code, out, err = vbm("import", box["ova"], "--vsys", "0", "--vmname", "vm1", "--vsys", "0",
                         "--unit", "10",
                         "--disk", str(disk), check=0)
    assert out.rstrip().endswith("Successfully imported the appliance.")
    assert re.search(r"OK\.\n(.|\n)*\d{2}%", err)
    info = vbm.machinereadable("vm1")
    assert info["CfgFile"] == str(folder / "vm1" / "vm1.vbox")
    assert (info["memory"], info["cpus"], info["nic1"]) == (512, 1, "nat")
    assert info["SATA Controller-0-0"] == str(disk)
    _same(box["raw"], str(disk))
    _, minfo, _ = vbm("showmediuminfo", str(disk), check=0)
    assert _info_field(minfo, "Format variant") == "dynamic default"
    # export to an OVA with a manifest, then import it under another name: the same machine
    ova = str(tmp_path / "out" / "vm1.ova")
    os.makedirs(os.path.dirname(ova))
    _, out, _ = vbm("export", "vm1", "-o", ova, "--manifest", "--vsys", "0", "--product", "P",
                    "--description", "exported", check=0)
    assert out == "Successfully exported 1 machine(s).\n"
    with tarfile.open(ova) as t:
        assert t.getnames() == ["vm1.ovf", "vm1-disk001.vmdk", "vm1.mf"]
        t.extractall(tmp_path / "x", filter="data")
    subprocess.run(["qemu-img", "check", str(tmp_path / "x" / "vm1-disk001.vmdk")], check=True,
                   capture_output=True)
    _same(box["raw"], str(tmp_path / "x" / "vm1-disk001.vmdk"))
    exported = (tmp_path / "x" / "vm1.ovf").read_text()
    assert "vbox:Machine" in exported and "__vboxpy" not in exported   # only what VirtualBox writes
    _, out, _ = vbm("import", ova, "-n", check=0)
    assert " 5: Product (ignored): P\n" in out and "extra slot=0;type=NAT" in out
    vbm("import", ova, "--vsys", "0", "--vmname", "vm2", "--options", "keepallmacs", check=0)
    again = vbm.machinereadable("vm2")
    for key in ("memory", "cpus", "ostype", "nic1", "macaddress1", "storagecontrollername0",
                "storagecontrollername1", "boot1", "rtcuseutc"):
        assert again.get(key) == info.get(key), key
    assert again["description"] == "exported"
    assert again["SATA Controller-0-0"] == str(folder / "vm2" / "vm1-disk001.vmdk")
    _same(box["raw"], again["SATA Controller-0-0"])


def test_import_options_and_ignored_units(vbm, box):
    vbm("import", box["ovf"], "--vsys", "0", "--vmname", "v", "--options", "importtovdi", check=0)
    info = vbm.machinereadable("v")
    assert info["SATA Controller-0-0"].endswith("/v/box-disk001.vdi")
    _same(box["raw"], info["SATA Controller-0-0"], "vdi")
    _, out, _ = vbm("import", box["ovf"], "--vsys", "0", "--vmname", "w", "--unit", "10", "--ignore",
                    "--unit", "8",
                    "--ignore", check=0)
    assert "10: Hard disk image: source image=box-disk001.vmdk -- disabled" in out
    assert " 8: IDE controller, type PIIX4 -- disabled" in out
    info = vbm.machinereadable("w")
    assert "storagecontrollername1" not in info and info["storagecontrollername0"] == "SATA Controller"
    assert info["SATA Controller-0-0"] == "none"
    code, _, err = vbm("import", box["ovf"], "--vmname", "x")
    assert code == 2 and 'requires preceding --vsys argument' in err
    code, _, err = vbm("import", box["ovf"], "--vsys", "3", "--vmname", "x")
    assert code == 2 and "the OVF contains only 1 virtual system(s)" in err


def test_tampered_manifest_fails_and_leaves_nothing(vbm, box, tmp_path):
    d = box["dir"]
    import hashlib
    lines = [
        f"SHA256({n})= {hashlib.sha256((d / n).read_bytes()).hexdigest()}"
        for n in ("box.ovf", "box-disk001.vmdk")
    ]
    (d / "box.mf").write_text("\n".join(lines) + "\n")
    data = bytearray((d / "box-disk001.vmdk").read_bytes())
    data[-2000] ^= 0xFF
    (d / "box-disk001.vmdk").write_bytes(bytes(data))
    code, _, err = vbm("import", box["ovf"], "--vsys", "0", "--vmname", "t")
    assert code == 1 and "does not match the one in the manifest" in err
    assert "Appliance import failed" in err
    _, vms, _ = vbm("list", "vms", check=0)
    assert vms == ""
    assert not (vbm.home / "VirtualBox VMs" / "t" / "box-disk001.vmdk").exists()


def test_snapshots_of_an_imported_machine(vbm, box):
    """The imported VMDK gets a VDI differencing image per snapshot; deleting merges back into it."""
    vbm("import", box["ovf"], "--vsys", "0", "--vmname", "s", check=0)
    before = vbm.machinereadable("s")
    base, base_id = before["SATA Controller-0-0"], before["SATA Controller-ImageUUID-0-0"]
    vbm("snapshot", "s", "take", "one", check=0)
    current = vbm.machinereadable("s")["SATA Controller-0-0"]
    assert current.endswith(".vdi") and "/s/Snapshots/" in current    # (qemu-img reads no VDI diffs)
    _, minfo, _ = vbm("showmediuminfo", current, check=0)
    assert _info_field(minfo, "Parent UUID") == base_id
    vbm("snapshot", "s", "delete", "one", check=0)
    assert vbm.machinereadable("s")["SATA Controller-0-0"] == base
    _same(box["raw"], base)
    subprocess.run(["qemu-img", "check", base], check=True, capture_output=True)


def test_import_overrides_and_packer_style_folder_export(vbm, box, tmp_path):
    base = tmp_path / "elsewhere"
    _, out, _ = vbm("import", box["ovf"], "--vsys", "0", "--vmname", "o", "--ostype", "Ubuntu_64",
                    "--memory", "768",
                    "--cpus", "2", "--basefolder", str(base), "--group", "/g1", "--description",
                    "d1", check=0)
    assert ' 0: OS type specified with --ostype: "Ubuntu_64"' in out
    assert (" 5: No. of CPUs specified with --cpus: 2" in out
            and " 6: Guest memory specified with --memory: 768 MB" in out)
    info = vbm.machinereadable("o")
    assert info["CfgFile"] == str(base / "g1" / "o" / "o.vbox")
    assert ((info["memory"], info["cpus"], info["ostype"], info["groups"])
            == (768, 2, "Ubuntu (64-bit)", "/g1"))
    assert info["SATA Controller-0-0"] == str(base / "g1" / "o" / "box-disk001.vmdk")
    code, _, err = vbm("import", box["ovf"], "--vsys", "0", "--vmname", "p", "--cpus", "500")
    assert code == 2 and "--cpus option must be a number" in err
    # Packer's virtualbox-ovf builder: export into a folder as <vm>.ovf, OVF 2.0 here
    out_dir = tmp_path / "packer-out"
    out_dir.mkdir()
    _, out, _ = vbm("export", "o", "--output", str(out_dir / "o.ovf"), "--ovf20", check=0)
    assert sorted(os.listdir(out_dir)) == ["o-disk001.vmdk", "o.ovf"]
    assert 'xmlns="http://schemas.dmtf.org/ovf/envelope/2"' in (out_dir / "o.ovf").read_text()
    _same(box["raw"], str(out_dir / "o-disk001.vmdk"))
    code, _, err = vbm("export", "o", "--output", str(out_dir / "o.ovf"))
    assert code == 1 and "already exists" in err
    vbm("import", str(out_dir / "o.ovf"), "--vsys", "0", "--vmname", "q", check=0)
    q = vbm.machinereadable("q")
    assert (q["memory"], q["cpus"], q["ostype"], q["groups"]) == (768, 2, "Ubuntu (64-bit)", "/g1")
    _same(box["raw"], q["SATA Controller-0-0"])


VBOX_MACHINE = """
    <vbox:Machine ovf:required="false" version="1.12-linux" uuid="{{4b8e2f0c-93d5-4d7e-8a59-6f3f8e0f2a11}}"
                  name="old-box" OSType="Debian_64" snapshotFolder="Snapshots" lastStateChange="2015-07-15T16:47:25Z">
      <ovf:Info>Complete VirtualBox machine configuration in VirtualBox format</ovf:Info>
      <ExtraData><ExtraDataItem name="custom/key" value="kept"/></ExtraData>
      <Hardware version="2">
        <CPU count="2"><PAE enabled="true"/></CPU>
        <Memory RAMSize="640"/>
        <Boot><Order position="1" device="HardDisk"/><Order position="2" device="DVD"/>
              <Order position="3" device="None"/><Order position="4" device="None"/></Boot>
        <BIOS><ACPI enabled="true"/><IOAPIC enabled="true"/></BIOS>
        <Network>
          <Adapter slot="0" enabled="true" MACAddress="080027FAE441" cable="true" type="82540EM"><NAT/></Adapter>
        </Network>
        <RTC localOrUTC="UTC"/>
      </Hardware>
      <StorageControllers>
        <StorageController name="IDE" type="PIIX4" PortCount="2" useHostIOCache="true" Bootable="true">
          <AttachedDevice type="HardDisk" port="0" device="0"><Image uuid="{{0dcae266-d30e-4b47-859d-c9ee307a69f0}}"/>
          </AttachedDevice>
          <AttachedDevice passthrough="false" type="DVD" port="1" device="0"/>
        </StorageController>
      </StorageControllers>
    </vbox:Machine>
  </VirtualSystem>"""  # noqa: E501 - as VirtualBox writes it


def test_import_of_a_box_with_an_older_vbox_machine_section(vbm, box):
    """Boxes made by VirtualBox 4.x/5.x carry a 1.12 machine; it wins over the OVF items (2 CPUs, 640 MB,
    an IDE controller named "IDE", the DVD drive, UTC clock, extra data), and --options keepnatmacs
    keeps its NAT MAC (Vagrant's base_mac)."""
    ovf = box["dir"] / "box.ovf"
    text = ovf.read_text().replace("xmlns:vssd=",
                                   'xmlns:vbox="http://www.virtualbox.org/ovf/machine" xmlns:vssd=')
    text = text.replace('ovf:diskId="vmdisk1"',
                        'ovf:diskId="vmdisk1" vbox:uuid="0dcae266-d30e-4b47-859d-c9ee307a69f0"')
    ovf.write_text(text.replace("  </VirtualSystem>", VBOX_MACHINE.format()))
    _, out, _ = vbm("import", "-n", str(ovf), check=0)
    assert ' 1: Suggested VM name "old-box"' in out
    assert " 5: Number of CPUs: 2\n" in out and " 6: Guest memory: 640 MB\n" in out
    assert " 7: Network adapter: orig NAT, config 3, extra slot=0;type=NAT\n" in out
    assert " 8: CD-ROM\n" in out and " 9: IDE controller, type PIIX4\n" in out     # VirtualBox's order
    assert re.search(r"10: Hard disk image: source image=box-disk001.vmdk, target "
                     r"path=.+/old-box/box-disk001.vmdk, "
                     r"controller=9;channel=0", out)
    vbm("import", str(ovf), "--vsys", "0", "--vmname", "nb", "--options", "keepnatmacs", check=0)
    info = vbm.machinereadable("nb")
    assert ((info["cpus"], info["memory"], info["macaddress1"], info["rtcuseutc"])
            == (2, 640, "080027FAE441", "on"))
    assert info["storagecontrollername0"] == "IDE" and info["IDE-0-0"].endswith("/nb/box-disk001.vmdk")
    assert info["IDE-1-0"] == "emptydrive" and info["boot1"] == "disk"
    _, extra, _ = vbm("getextradata", "nb", "custom/key", check=0)
    assert extra == "Value: kept\n"
    _same(box["raw"], info["IDE-0-0"])


def test_two_ovf_ide_items_are_one_piix4(vbm, box):
    """Like old Vagrant boxes: primary and secondary IDE items (a CD-ROM on the secondary) and a
    SATA disk; listed as VirtualBox lists them, imported as one IDE controller."""
    ovf = box["dir"] / "box.ovf"
    extra = (
        "<Item><rasd:Address>1</rasd:Address><rasd:InstanceID>7</rasd:InstanceID><rasd:ResourceSubType>PIIX4"
        "</rasd:ResourceSubType><rasd:ResourceType>5</rasd:ResourceType></Item>"
        "<Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:InstanceID>8</rasd:InstanceID>"
        "<rasd:Parent>7</rasd:Parent><rasd:ResourceType>15</rasd:ResourceType></Item>"
    )
    ovf.write_text(ovf.read_text().replace("    </VirtualHardwareSection>",
                                           extra + "</VirtualHardwareSection>"))
    _, out, _ = vbm("import", "-n", str(ovf), check=0)
    lines = [ln for ln in out.splitlines() if re.match(r"^ ?\d+: ", ln)]
    assert [re.split(r"[:,]", ln.split(": ", 1)[1])[0] for ln in lines[7:]] == [
        "Network adapter", "CD-ROM", "IDE controller", "SATA controller", "IDE controller", "Hard disk image"]
    assert "12: Hard disk image: source image=box-disk001.vmdk" in out and "controller=10;channel=0" in out
    vbm("import", str(ovf), "--vsys", "0", "--vmname", "two", check=0)
    info = vbm.machinereadable("two")
    assert info["storagecontrollername0"] == "IDE Controller" and "storagecontrollername2" not in info
    assert info["IDE Controller-1-0"] == "emptydrive"
    _same(box["raw"], info["SATA Controller-0-0"])
