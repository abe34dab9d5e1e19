"""OVF descriptors and appliance files: parsing what boxes carry (1.0, 2.0), writing and reading
back our own, the vbox:Machine section through the settings layer, hostile descriptors, and
manifest checks of folders and OVA tars."""

import hashlib
import io
import tarfile

import pytest
from lxml import etree

from settings import machine_xml
from settings.models import Hardware, MachineSettings, StorageController
from settings.xmltree import NS
from vboxsvc.api.errors import VBoxError
from vboxsvc.server import appliance_ovf as ovf
from vboxsvc.server.appliance_io import ApplianceSource, write_manifest, write_ova

BOX = b"""<?xml version="1.0"?>
<Envelope ovf:version="1.0" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
  <References><File ovf:id="file1" ovf:href="box-disk001.vmdk"/></References>
  <DiskSection><Info>disks</Info>
    <Disk ovf:capacity="8" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="vmdisk1" ovf:fileRef="file1"
          ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="debian-box">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="96"><Info>os</Info></OperatingSystemSection>
    <VirtualHardwareSection><Info>hw</Info>
      <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
            <rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID>
            <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>
      <Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>AHCI</rasd:ResourceSubType>
            <rasd:ResourceType>20</rasd:ResourceType></Item>
      <Item><rasd:Connection>NAT</rasd:Connection><rasd:InstanceID>4</rasd:InstanceID>
            <rasd:ResourceSubType>E1000</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
            <rasd:InstanceID>5</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def test_parse_a_vagrant_style_box():
    env = ovf.parse(BOX, "/b/box.ovf")
    assert env.version == "1.0"
    assert env.files["file1"].href == "box-disk001.vmdk"
    d = env.disks["vmdisk1"]
    assert d.capacity == 8 << 30 and d.format == ovf.VMDK_STREAM_URI
    [s] = env.systems
    assert (s.id, s.os_cim, s.cpus, s.memory_mb) == ("debian-box", 96, 2, 1024)
    assert [(c.instance, c.kind) for c in s.controllers] == [("3", "SATA")]
    assert [(d.kind, d.parent, d.address, d.disk_id) for d in s.drives] == [("disk", "3", 0, "vmdisk1")]
    assert [(n.connection, n.subtype) for n in s.nics] == [("NAT", "E1000")]
    assert s.machine_xml is None


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda b: b.replace(b'ovf:href="box-disk001.vmdk"', b'ovf:href="../../etc/shadow"'),
            "not a plain file name",
        ),
        (lambda b: b.replace(b"ovf:/disk/vmdisk1", b"ovf:/disk/nope"), "unknown disk"),
        (lambda b: b.replace(b'ovf:fileRef="file1"', b'ovf:fileRef="file9"'), "unknown file"),
        (lambda b: b.replace(b"byte * 2^30", b"furlongs"), "allocation units"),
        (lambda b: b.replace(b'ovf:capacity="8"', b'ovf:capacity="-8"'), "Negative value"),
        (lambda b: b.replace(b"<rasd:VirtualQuantity>2<", b"<rasd:VirtualQuantity>999<"), "CPUs"),
        (lambda b: b.replace(b"Envelope", b"Envelop"), "Envelope"),
        (lambda b: b[:200], "Error reading"),
        (
            lambda b: b.replace(b"<VirtualSystem ovf:id", b"<Other ovf:id").replace(
                b"</VirtualSystem>", b"</Other>"
            ),
            "no virtual system",
        ),
    ],
)
def test_hostile_descriptors(mutate, message):
    with pytest.raises(VBoxError, match=message):
        ovf.parse(mutate(BOX), "/b/box.ovf")


def test_external_entities_are_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    evil = BOX.replace(b'<?xml version="1.0"?>', f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM '
                                                f'"file://{secret}">]>'.encode()).replace(
        b"<Info>A virtual machine</Info>", b"<Info>&x;</Info><Name>&x;</Name>")
    env = ovf.parse(evil, "/b/box.ovf")
    assert "TOPSECRET" not in env.systems[0].name


def _machine_element():
    s = MachineSettings(name="src", os_type="Debian_64", hardware=Hardware(
        memory_mb=768, cpu_count=3, storage_controllers=[StorageController(name="SATA", bus="SATA")]))
    from settings import xmlio
    from settings.version import make_version
    tree = xmlio.new_document(make_version(19))
    machine_xml.write_machine(tree.getroot(), s, 19, "/tmp")
    m = tree.getroot()[0]
    m.set("version", "1.19-linux")
    return m, s


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_write_then_read_back(version):
    machine, s = _machine_element()
    files = [ovf.OvfFile("file1", "x-disk001.vmdk", 1234)]
    disks = [ovf.OvfDisk("vmdisk1", 64 << 20, format=ovf.VMDK_STREAM_URI, file_ref="file1",
                         vbox_uuid="6a1d3f9e-0000-4000-8000-000000000001")]
    system = {"name": "x", "os_cim": 96, "os_vbox": "Debian_64",
              "os_description": "Debian (64-bit)", "cpus": 3,
              "memory_mb": 768, "controllers": [ovf.OvfController("7", "SATA", "AHCI")],
              "drives": [ovf.OvfDrive("disk", "7", 0, "vmdisk1")], "nics": [ovf.OvfNic("NAT", "E1000")],
              "product": "P", "vendor": "V", "version": "1", "description": "d", "license": "L",
              "machine": machine}
    data = ovf.write(version, files, disks, [system])
    root = etree.fromstring(data)
    assert root.tag == f"{{{ovf.NS_OVF2 if version == '2.0' else ovf.NS_OVF1}}}Envelope"
    if version == "2.0":      # 2.0 describes disks and NICs with their own CIM classes
        assert root.find(f".//{{{ovf.NS_OVF2}}}StorageItem") is not None
        assert root.find(f".//{{{ovf.NS_OVF2}}}EthernetPortItem") is not None
    env = ovf.parse(data, "/x.ovf")
    assert env.version == version
    assert env.disks["vmdisk1"].vbox_uuid == "6a1d3f9e-0000-4000-8000-000000000001"
    assert env.files["file1"].size == 1234
    [r] = env.systems
    assert (r.name, r.os_cim, r.os_vbox, r.cpus, r.memory_mb) == ("x", 96, "Debian_64", 3, 768)
    assert (r.product, r.vendor, r.version, r.description, r.license) == ("P", "V", "1", "d", "L")
    assert [(d.kind, d.disk_id) for d in r.drives] == [("disk", "vmdisk1")]
    assert r.machine_xml is not None
    # the embedded machine reads back through the settings layer unchanged
    back = machine_xml.read_machine(ovf.machine_settings_root(r.machine_xml, NS), 19, "/tmp")
    assert (back.name, back.os_type, back.hardware.memory_mb, back.hardware.cpu_count) == ("src", "Debian_64",
                                                                                            768, 3)
    assert back.uuid == s.uuid and [c.name for c in back.hardware.storage_controllers] == ["SATA"]


def _folder(tmp_path, algo="SHA1"):
    (tmp_path / "box.ovf").write_bytes(BOX)
    (tmp_path / "box-disk001.vmdk").write_bytes(b"disk bytes")
    write_manifest(str(tmp_path / "box.mf"), [("box.ovf", str(tmp_path / "box.ovf")),
                                              ("box-disk001.vmdk", str(tmp_path / "box-disk001.vmdk"))], algo)
    return tmp_path


@pytest.mark.parametrize("algo", ["SHA1", "SHA256"])
def test_manifest_of_a_folder(tmp_path, algo):
    d = _folder(tmp_path, algo)
    line = (d / "box.mf").read_text().splitlines()[0]
    assert line == f"{algo}(box.ovf)= {hashlib.new(algo.lower(), BOX).hexdigest()}"
    src = ApplianceSource(str(d / "box.ovf"))
    assert src.verify_manifest() == ["box.ovf", "box-disk001.vmdk"]
    (d / "box-disk001.vmdk").write_bytes(b"tampered!!")
    with pytest.raises(VBoxError, match="digest of 'box-disk001.vmdk' does not match"):
        src.verify_manifest()


def test_manifest_listing_a_missing_file_or_garbage(tmp_path):
    d = _folder(tmp_path)
    (d / "box.mf").write_text((d / "box.mf").read_text() + "SHA1(other.vmdk)= 00\n")
    with pytest.raises(VBoxError, match="not part of"):
        ApplianceSource(str(d / "box.ovf")).verify_manifest()
    (d / "box.mf").write_text("hello\n")
    with pytest.raises(VBoxError, match="not understood"):
        ApplianceSource(str(d / "box.ovf")).verify_manifest()


def test_ova_order_and_manifest(tmp_path):
    d = _folder(tmp_path)
    ova = str(tmp_path / "a.ova")
    write_ova(ova, [("box.ovf", str(d / "box.ovf")), ("box-disk001.vmdk", str(d / "box-disk001.vmdk")),
                    ("box.mf", str(d / "box.mf"))])
    with tarfile.open(ova) as t:
        assert t.getnames() == ["box.ovf", "box-disk001.vmdk", "box.mf"]
    src = ApplianceSource(ova)
    assert src.descriptor_name == "box.ovf" and src.local_path("box.ovf") is None
    assert src.verify_manifest() == ["box.ovf", "box-disk001.vmdk"]
    assert src.read("box-disk001.vmdk", 100) == b"disk bytes"
    src.close()


def test_ova_with_paths_is_refused(tmp_path):
    ova = tmp_path / "evil.ova"
    with tarfile.open(ova, "w") as t:
        for name, data in (("box.ovf", BOX), ("../escape.vmdk", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    with pytest.raises(VBoxError, match="sub-folder"):
        ApplianceSource(str(ova))
