"""A Vagrant box for the VirtualBox provider made from a raw guest disk (the full Debian disk).

A box is a tar of `metadata.json` (`{"provider": "virtualbox"}`), `box.ovf` (an OVF 1.0 envelope
as VirtualBox exports it: one virtual system with CPU, memory, an AHCI controller, the disk and a
NAT e1000 NIC), the disk as a streamOptimized VMDK (`box-disk001.vmdk`, what boxes carry) and a
Vagrantfile with the box's own defaults (its base MAC; the default `/vagrant` synced folder is left
on: the guest's own kernel mounts it with vboxsf). The disk is converted with qemu-img. The result is cached
beside the raw disk, keyed by the disk's size and modification time and this module's version.

    python3 -m vmm.guest.vagrant_box <raw disk> <out dir>
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid as uuidlib
from pathlib import Path

BOX_VERSION = 2
DISK_NAME = "box-disk001.vmdk"
STREAM_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
OS_DEBIAN_64 = 96            # CIM OperatingSystem id VirtualBox uses for Debian_64
MEMORY_MB = 1024
CPUS = 1
BASE_MAC = "080027D1E8A0"


class BoxBuildError(Exception):
    pass


def _item(fields: dict[str, str]) -> str:
    # rasd elements in the schema's (alphabetical) order
    body = "".join(f"        <rasd:{k}>{v}</rasd:{k}>\n" for k, v in sorted(fields.items()))
    return f"      <Item>\n{body}      </Item>\n"


def box_ovf(name: str, capacity: int, disk_uuid: str) -> str:
    items = [
        _item({"Caption": f"{CPUS} virtual CPU", "Description": "Number of virtual CPUs",
               "ElementName": f"{CPUS} virtual CPU", "InstanceID": "1", "ResourceType": "3",
               "VirtualQuantity": str(CPUS)}),
        _item({"AllocationUnits": "MegaBytes", "Caption": f"{MEMORY_MB} MB of memory",
               "Description": "Memory Size", "ElementName": f"{MEMORY_MB} MB of memory", "InstanceID": "2",
               "ResourceType": "4", "VirtualQuantity": str(MEMORY_MB)}),
        _item({"Address": "0", "Caption": "sataController0", "Description": "SATA Controller",
               "ElementName": "sataController0", "InstanceID": "3", "ResourceSubType": "AHCI",
               "ResourceType": "20"}),
        _item({"AddressOnParent": "0", "Caption": "disk1", "Description": "Disk Image", "ElementName": "disk1",
               "HostResource": "/disk/vmdisk1", "InstanceID": "4", "Parent": "3", "ResourceType": "17"}),
        _item({"AutomaticAllocation": "true", "Caption": "Ethernet adapter on 'NAT'", "Connection": "NAT",
               "ElementName": "Ethernet adapter on 'NAT'", "InstanceID": "5", "ResourceSubType": "E1000",
               "ResourceType": "10"}),
    ]
    return f"""<?xml version="1.0"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" \
xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" \
xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" \
xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:id="file1" ovf:href="{DISK_NAME}"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="{capacity}" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="{STREAM_FORMAT}" \
vbox:uuid="{disk_uuid}"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT">
      <Description>Logical network used by this appliance.</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="{OS_DEBIAN_64}">
      <Info>The kind of installed guest operating system</Info>
      <Description>Debian_64</Description>
      <vbox:OSType ovf:required="false">Debian_64</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType>
      </System>
{"".join(items)}    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


VAGRANTFILE = f"""Vagrant.configure("2") do |config|
  config.vm.base_mac = "{BASE_MAC}"
end
"""


def _key(raw: Path) -> str:
    st = raw.stat()
    return hashlib.sha256(f"{BOX_VERSION}:{raw.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]


def build_box(raw: Path, out: Path, name: str = "vboxpy-debian12", log=print) -> Path:
    """`<out>/<name>.box` from the raw disk `raw` (cached: rebuilt when the disk changes)."""
    raw, out = Path(raw), Path(out)
    if not raw.is_file():
        raise BoxBuildError(f"no raw disk at {raw}")
    if shutil.which("qemu-img") is None:
        raise BoxBuildError("qemu-img is not installed (Debian's qemu-utils)")
    out.mkdir(parents=True, exist_ok=True)
    box = out / f"{name}.box"
    stamp = out / f"{name}.box.key"
    key = _key(raw)
    if box.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        return box
    work = out / f"{name}.parts"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    log(f"vagrant box: converting {raw} to a streamOptimized VMDK")
    proc = subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
                           str(raw), str(work / DISK_NAME)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BoxBuildError(f"qemu-img convert failed: {proc.stderr.strip()}")
    capacity = raw.stat().st_size
    (work / "box.ovf").write_text(box_ovf(name, capacity, str(uuidlib.uuid4())))
    (work / "metadata.json").write_text(json.dumps({"provider": "virtualbox"}) + "\n")
    (work / "Vagrantfile").write_text(VAGRANTFILE)
    tmp = box.with_suffix(".box.tmp")
    with tarfile.open(tmp, "w") as tar:
        for part in ("metadata.json", "Vagrantfile", "box.ovf", DISK_NAME):
            tar.add(work / part, arcname=part)
    os.replace(tmp, box)
    stamp.write_text(key + "\n")
    shutil.rmtree(work, ignore_errors=True)
    log(f"vagrant box: {box} ({box.stat().st_size >> 20} MiB)")
    return box


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python3 -m vmm.guest.vagrant_box <raw disk> <out dir>", file=sys.stderr)
        return 2
    try:
        print(build_box(Path(args[0]), Path(args[1])))
    except BoxBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
