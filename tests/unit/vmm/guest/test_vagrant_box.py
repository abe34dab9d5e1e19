"""The Vagrant box maker: a well-formed OVF 1.0 envelope with what Vagrant's import reads, and a
tar with the four parts, the disk as a streamOptimized VMDK qemu-img reads back unchanged."""

import json
import shutil
import subprocess
import tarfile

import pytest
from lxml import etree

from vmm.guest import vagrant_box

OVF = "{http://schemas.dmtf.org/ovf/envelope/1}"
RASD = "{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}"


def test_ovf_envelope():
    root = etree.fromstring(vagrant_box.box_ovf("b1", 1 << 30, "u-1").encode())
    disk = root.find(f"{OVF}DiskSection/{OVF}Disk")
    assert (disk.get(f"{OVF}capacity") == str(1 << 30)
            and disk.get(f"{OVF}format").endswith("#streamOptimized"))
    assert root.find(f"{OVF}References/{OVF}File").get(f"{OVF}href") == vagrant_box.DISK_NAME
    vs = root.find(f"{OVF}VirtualSystem")
    assert vs.find(f"{OVF}OperatingSystemSection").get(f"{OVF}id") == "96"
    items = {i.findtext(f"{RASD}ResourceType"): i for i in vs.iter(f"{OVF}Item")}
    assert items["17"].findtext(f"{RASD}HostResource") == "/disk/vmdisk1"
    assert items["17"].findtext(f"{RASD}Parent") == items["20"].findtext(f"{RASD}InstanceID")
    assert items["20"].findtext(f"{RASD}ResourceSubType") == "AHCI"
    assert (items["10"].findtext(f"{RASD}ResourceSubType"), items["10"].findtext(f"{RASD}Connection")) == (
        "E1000", "NAT")
    names = [etree.QName(c).localname for c in items["17"]]
    assert names == sorted(names)


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed (qemu-utils)")
def test_box_tar_and_cache(tmp_path):
    raw = tmp_path / "d.raw"
    raw.write_bytes(b"\xab" * 65536 + b"\0" * (1 << 20))
    box = vagrant_box.build_box(raw, tmp_path / "out", log=lambda _t: None)
    with tarfile.open(box) as tar:
        assert sorted(tar.getnames()) == sorted(["metadata.json", "Vagrantfile", "box.ovf",
                                                 vagrant_box.DISK_NAME])
        assert json.load(tar.extractfile("metadata.json")) == {"provider": "virtualbox"}
        vagrantfile = tar.extractfile("Vagrantfile").read()
        assert b'config.vm.base_mac = "080027' in vagrantfile and b'synced_folder' not in vagrantfile
        tar.extract(vagrant_box.DISK_NAME, tmp_path / "x")
    vmdk = tmp_path / "x" / vagrant_box.DISK_NAME
    info = subprocess.run(["qemu-img", "info", str(vmdk)], capture_output=True, text=True).stdout
    assert "streamOptimized" in info
    assert (
        subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "vmdk", str(raw), str(vmdk)]).returncode
        == 0
    )
    mtime = box.stat().st_mtime_ns
    assert vagrant_box.build_box(raw, tmp_path / "out", log=lambda _t: None) == box
    assert box.stat().st_mtime_ns == mtime  # cached
