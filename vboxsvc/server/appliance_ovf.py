"""OVF descriptors (DMTF DSP0243, versions 1.0 and 2.0; 0.9 read): parsing what an appliance
describes into plain records, and writing the descriptor of an export, in the shape VirtualBox's
ovfreader.cpp reads and ApplianceImplExport.cpp writes (including the `vbox:Machine` section with
the complete machine configuration). Parsing is strict about structure and never resolves
entities or fetches anything: appliances come from the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from ..api import errors as rc
from ..api.errors import VBoxError

NS_OVF1 = "http://schemas.dmtf.org/ovf/envelope/1"
NS_OVF2 = "http://schemas.dmtf.org/ovf/envelope/2"
NS_OVF09 = "http://www.vmware.com/schema/ovf/1/envelope"
NS_RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
NS_VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
NS_EPASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData"
NS_SASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData"
NS_VBOX = "http://www.virtualbox.org/ovf/machine"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
VMDK_STREAM_URI = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
MAX_DESCRIPTOR = 16 << 20

# rasd:ResourceType values (CIM_ResourceAllocationSettingData)
RT_CPU = 3
RT_MEMORY = 4
RT_IDE = 5
RT_SCSI = 6
RT_ETHERNET = 10
RT_FLOPPY = 14
RT_CDROM = 15
RT_DVD = 16
RT_DISK = 17
RT_OTHER_STORAGE = 20
RT_USB = 23
RT_SOUND = 35

# CIM operating system numbers <-> VirtualBox guest OS type ids (ovfreader.h CIMOSType_T)
CIM_TO_VBOX = {
    1: "Other", 36: "Linux", 58: "Windows2000", 67: "WindowsXP", 71: "WindowsXP_64", 73: "WindowsVista",
    79: "RedHat", 80: "RedHat_64", 82: "OpenSUSE", 83: "OpenSUSE_64", 93: "Ubuntu", 94: "Ubuntu_64",
    95: "Debian", 96: "Debian_64", 97: "Linux24", 98: "Linux24_64", 99: "Linux26", 100: "Linux26_64",
    101: "Linux_64", 102: "Other_64", 103: "Windows7", 104: "Windows7_64", 42: "FreeBSD", 78: "FreeBSD_64",
    65: "OpenBSD", 119: "OpenBSD_64", 68: "NetBSD", 120: "NetBSD_64", 105: "Fedora", 106: "Fedora_64",
    107: "Gentoo", 108: "Gentoo_64", 109: "Oracle", 110: "Oracle_64", 116: "Windows10", 117: "Windows10_64",
}
VBOX_TO_CIM = {v: k for k, v in CIM_TO_VBOX.items()}
VBOX_TO_CIM.update({"Debian11_64": 96, "Debian12_64": 96, "Ubuntu22_LTS_64": 94, "Ubuntu24_LTS_64": 94,
                    "ArchLinux": 36, "ArchLinux_64": 101, "Windows11_64": 117, "Windows2019_64": 117,
                    "Windows2022_64": 117, "Solaris11_64": 102, "DOS": 1, "OS2Warp45": 1})

NIC_SUBTYPES = {"e1000": "I82540EM", "pcnet32": "Am79C973", "pcnet": "Am79C973", "virtio": "Virtio",
                "virtio-net": "Virtio", "vmxnet3": "I82545EM", "e1000e": "I82545EM"}
NIC_TO_SUBTYPE = {"I82540EM": "E1000", "I82543GC": "E1000", "I82545EM": "E1000", "Am79C970A": "PCNet32",
                  "Am79C973": "PCNet32", "Am79C960": "PCNet32", "Virtio": "virtio"}


def fail(text: str) -> VBoxError:
    return VBoxError(rc.VBOX_E_FILE_ERROR, text, "IAppliance", "ApplianceWrap")


@dataclass
class OvfFile:
    id: str
    href: str
    size: int = -1
    chunk_size: int = -1
    compression: str = ""


@dataclass
class OvfDisk:
    disk_id: str
    capacity: int           # bytes
    populated: int = -1
    format: str = ""
    file_ref: str = ""
    vbox_uuid: str = ""


@dataclass
class OvfController:
    instance: str
    kind: str               # IDE, SATA, SCSI, SAS, VirtioSCSI, NVMe
    subtype: str
    address: int = 0


@dataclass
class OvfDrive:
    kind: str               # disk, cdrom, floppy
    parent: str             # controller instance id
    address: int
    disk_id: str = ""


@dataclass
class OvfNic:
    connection: str
    subtype: str
    mac: str = ""


@dataclass
class OvfSystem:
    id: str
    name: str
    os_cim: int = 1
    os_vbox: str = ""
    os_description: str = ""
    cpus: int = 1
    memory_mb: int = 0
    description: str = ""
    product: str = ""
    product_url: str = ""
    vendor: str = ""
    vendor_url: str = ""
    version: str = ""
    license: str = ""
    controllers: list[OvfController] = field(default_factory=list)
    drives: list[OvfDrive] = field(default_factory=list)
    nics: list[OvfNic] = field(default_factory=list)
    usb: bool = False
    sound: str = ""
    machine_xml: etree._Element | None = None     # the vbox:Machine element, if any


@dataclass
class OvfEnvelope:
    version: str                                  # "0.9", "1.0", "2.0"
    files: dict[str, OvfFile] = field(default_factory=dict)
    disks: dict[str, OvfDisk] = field(default_factory=dict)
    systems: list[OvfSystem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _local(tag) -> str:
    return tag[tag.rfind("}") + 1:] if isinstance(tag, str) else ""


def _attr(el, name: str, default: str = "") -> str:
    for k, v in el.attrib.items():
        if _local(k) == name:
            return v
    return default


def _kids(el, name: str) -> list:
    return [c for c in el if _local(c.tag) == name]


def _kid(el, name: str):
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _text(el, name: str, default: str = "") -> str:
    c = _kid(el, name)
    return (c.text or "").strip() if c is not None else default


def _int(value: str, what: str, path: str) -> int:
    try:
        n = int(value.strip())
    except (ValueError, AttributeError):
        raise fail(f"Invalid value '{value}' for {what} in the OVF file '{path}'") from None
    if n < 0:
        raise fail(f"Negative value {n} for {what} in the OVF file '{path}'")
    return n


def _units(units: str) -> int:
    """Bytes per unit of an OVF allocation unit string ('byte * 2^20', 'MegaBytes', ...)."""
    u = units.replace(" ", "").lower()
    if not u or u == "byte" or u == "bytes":
        return 1
    if u.startswith("byte*2^"):
        try:
            exp = int(u[7:])
        except ValueError:
            return 0
        return 1 << exp if 0 <= exp <= 60 else 0
    return {"kilobytes": 1 << 10, "megabytes": 1 << 20, "gigabytes": 1 << 30, "terabytes": 1 << 40,
            "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}.get(u, 0)


def parse(data: bytes, path: str) -> OvfEnvelope:
    if len(data) > MAX_DESCRIPTOR:
        raise fail(f"The OVF file '{path}' is larger than {MAX_DESCRIPTOR >> 20} MB")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        raise fail(f"Error reading \"{path}\": {e.msg or e}") from None
    ns = root.tag[1:root.tag.find("}")] if root.tag.startswith("{") else ""
    if _local(root.tag) != "Envelope" or ns not in (NS_OVF1, NS_OVF2, NS_OVF09):
        raise fail(f"Root element in OVF file must be \"Envelope\" (file \"{path}\")")
    env = OvfEnvelope(version={NS_OVF1: "1.0", NS_OVF2: "2.0", NS_OVF09: "0.9"}[ns])
    refs = _kid(root, "References")
    for f in _kids(refs, "File") if refs is not None else []:
        fid, href = _attr(f, "id"), _attr(f, "href")
        if not fid or not href:
            raise fail(f"File element in the OVF file '{path}' lacks 'id' or 'href'")
        _safe_name(href, path)
        env.files[fid] = OvfFile(fid, href, int(_attr(f, "size", "-1") or -1),
                                 int(_attr(f, "chunkSize", "-1") or -1), _attr(f, "compression"))
    for sec in root:
        name = _local(sec.tag)
        if name in ("DiskSection", "Section") and (name == "DiskSection" or _attr(sec, "type").endswith(
                "DiskSection_Type")):
            for d in _kids(sec, "Disk"):
                _read_disk(d, env, path)
        elif name == "VirtualSystem":
            env.systems.append(_read_system(sec, env, path))
        elif name == "VirtualSystemCollection":
            for vs in _kids(sec, "VirtualSystem"):
                env.systems.append(_read_system(vs, env, path))
    if not env.systems:
        raise fail(f"The OVF file '{path}' describes no virtual system")
    return env


def _safe_name(href: str, path: str) -> None:
    if not href or "/" in href or "\\" in href or href in (".", "..") or "\0" in href or ":" in href:
        raise fail(f"The OVF file '{path}' refers to the file '{href}', which is not a plain file name "
                   "next to it")


def _read_disk(d, env: OvfEnvelope, path: str) -> None:
    did = _attr(d, "diskId")
    if not did:
        raise fail(f"Disk element in the OVF file '{path}' lacks 'diskId'")
    unit = _units(_attr(d, "capacityAllocationUnits"))
    if not unit:
        raise fail(f"Unsupported capacity allocation units '{_attr(d, 'capacityAllocationUnits')}' for disk "
                   f"'{did}' in the OVF file '{path}'")
    cap = _int(_attr(d, "capacity", "0"), f"the capacity of disk '{did}'", path) * unit
    if cap <= 0 or cap > 1 << 50:
        raise fail(f"Invalid capacity {cap} of disk '{did}' in the OVF file '{path}'")
    ref = _attr(d, "fileRef")
    if ref and ref not in env.files:
        raise fail(f"Disk '{did}' in the OVF file '{path}' refers to the unknown file '{ref}'")
    env.disks[did] = OvfDisk(did, cap, int(_attr(d, "populatedSize", "-1") or -1), _attr(d, "format"), ref,
                             _attr(d, "uuid"))


def _read_system(vs, env: OvfEnvelope, path: str) -> OvfSystem:
    sys_ = OvfSystem(id=_attr(vs, "id"), name=_text(vs, "Name") or _attr(vs, "id"))
    for sec in vs:
        name = _local(sec.tag)
        if name == "OperatingSystemSection":
            sys_.os_cim = _int(_attr(sec, "id", "1") or "1", "the operating system id", path)
            sys_.os_description = _text(sec, "Description")
            sys_.os_vbox = _text(sec, "OSType")
        elif name == "VirtualHardwareSection":
            _read_hardware(sec, sys_, env, path)
        elif name == "ProductSection":
            sys_.product = _text(sec, "Product")
            sys_.product_url = _text(sec, "ProductUrl")
            sys_.vendor = _text(sec, "Vendor")
            sys_.vendor_url = _text(sec, "VendorUrl")
            sys_.version = _text(sec, "Version")
        elif name == "AnnotationSection":
            sys_.description = _text(sec, "Annotation")
        elif name == "EulaSection":
            sys_.license = _text(sec, "License")
        elif name == "Machine" and sec.tag.startswith("{" + NS_VBOX):
            sys_.machine_xml = sec
    if not sys_.id:
        raise fail(f"VirtualSystem element in the OVF file '{path}' lacks 'id'")
    return sys_


def _read_hardware(sec, sys_: OvfSystem, env: OvfEnvelope, path: str) -> None:
    for item in sec:
        if _local(item.tag) not in ("Item", "EthernetPortItem", "StorageItem"):
            continue
        try:
            rt = int(_text(item, "ResourceType", "0") or 0)
        except ValueError:
            raise fail(f"Invalid ResourceType in the OVF file '{path}'") from None
        inst = _text(item, "InstanceID") or _text(item, "InstanceId")
        sub = _text(item, "ResourceSubType")
        if rt == RT_CPU:
            sys_.cpus = max(1, _int(_text(item, "VirtualQuantity", "1") or "1", "the CPU count", path))
            if sys_.cpus > 64:
                raise fail(f"The OVF file '{path}' asks for {sys_.cpus} CPUs (at most 64)")
        elif rt == RT_MEMORY:
            unit = _units(_text(item, "AllocationUnits") or "MegaBytes")
            qty = _int(_text(item, "VirtualQuantity", "0") or "0", "the memory size", path)
            if not unit:
                raise fail(f"Unsupported memory allocation units in the OVF file '{path}'")
            sys_.memory_mb = qty * unit >> 20
        elif rt == RT_IDE:
            sys_.controllers.append(OvfController(inst, "IDE", sub or "PIIX4",
                                                  _int(_text(item, "Address", "0") or "0",
                                                       "an address", path)))
        elif rt == RT_SCSI:
            kind = "SAS" if sub.lower() == "lsilogicsas" else ("VirtioSCSI" if sub.lower() == "virtioscsi"
                                                                else "SCSI")
            sys_.controllers.append(OvfController(inst, kind, sub or "LsiLogic"))
        elif rt == RT_OTHER_STORAGE:
            low = sub.lower()
            kind = "SATA" if low == "ahci" else ("NVMe" if low == "nvme" else ("SAS" if low == "lsilogicsas"
                                                                                else "SATA"))
            sys_.controllers.append(OvfController(inst, kind, sub or "AHCI"))
        elif rt in (RT_DISK, RT_CDROM, RT_DVD, RT_FLOPPY):
            addr = _int(_text(item, "AddressOnParent", "0") or "0", "AddressOnParent", path)
            kind = {RT_DISK: "disk", RT_FLOPPY: "floppy"}.get(rt, "cdrom")
            drive = OvfDrive(kind, _text(item, "Parent"), addr)
            if rt == RT_DISK:
                res = _text(item, "HostResource")
                for prefix in ("ovf:/disk/", "/disk/", "ovf://disk/"):
                    if res.startswith(prefix):
                        drive.disk_id = res[len(prefix):]
                if drive.disk_id not in env.disks:
                    raise fail(f"The OVF file '{path}' attaches the unknown disk '{res}'")
            sys_.drives.append(drive)
        elif rt == RT_ETHERNET:
            sys_.nics.append(OvfNic(_text(item, "Connection") or "NAT", sub or "E1000",
                                    _text(item, "Address")))
        elif rt == RT_USB:
            sys_.usb = True
        elif rt == RT_SOUND:
            sys_.sound = sub or "ensoniq1371"


# ---- writing ------------------------------------------------------------------------------------


def write(version: str, files: list[OvfFile], disks: list[OvfDisk], systems: list[dict]) -> bytes:
    """An OVF descriptor. Each system dict: name, os_cim, os_vbox, os_description, cpus, memory_mb,
    controllers [OvfController], drives [OvfDrive], nics [OvfNic], product..., machine (an lxml
    Machine element in VirtualBox's settings namespace, or None)."""
    ns = NS_OVF2 if version == "2.0" else NS_OVF1
    nsmap = {None: ns, "ovf": ns, "rasd": NS_RASD, "vssd": NS_VSSD, "xsi": NS_XSI, "vbox": NS_VBOX}
    if version == "2.0":
        nsmap.update({"epasd": NS_EPASD, "sasd": NS_SASD})

    def q(name):                    # an element or attribute name in the OVF namespace
        return f"{{{ns}}}{name}"

    root = etree.Element(q("Envelope"), nsmap=nsmap)
    root.set(q("version"), version)
    root.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    refs = etree.SubElement(root, q("References"))
    for f in files:
        e = etree.SubElement(refs, q("File"))
        e.set(q("id"), f.id)
        e.set(q("href"), f.href)
        if f.size >= 0:
            e.set(q("size"), str(f.size))
    ds = etree.SubElement(root, q("DiskSection"))
    etree.SubElement(ds, q("Info")).text = "List of the virtual disks used in the package"
    for d in disks:
        e = etree.SubElement(ds, q("Disk"))
        e.set(q("capacity"), str(d.capacity))
        e.set(q("diskId"), d.disk_id)
        e.set(q("fileRef"), d.file_ref)
        e.set(q("format"), d.format)
        if d.vbox_uuid:
            e.set(f"{{{NS_VBOX}}}uuid", d.vbox_uuid)
    ns_sec = etree.SubElement(root, q("NetworkSection"))
    etree.SubElement(ns_sec, q("Info")).text = "Logical networks used in the package"
    nets = sorted({n.connection for s in systems for n in s["nics"]})
    for net in nets:
        e = etree.SubElement(ns_sec, q("Network"))
        e.set(q("name"), net)
        etree.SubElement(e, q("Description")).text = "Logical network used by this appliance."
    parent = root
    if len(systems) > 1:
        parent = etree.SubElement(root, q("VirtualSystemCollection"))
        parent.set(q("id"), "ExportedVirtualBoxMachines")
        etree.SubElement(parent, q("Info")).text = "A collection of virtual machines"
    for s in systems:
        _write_system(parent, ns, version, s)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _write_system(parent, ns: str, version: str, s: dict) -> None:
    def q(name):
        return f"{{{ns}}}{name}"

    vs = etree.SubElement(parent, q("VirtualSystem"))
    vs.set(q("id"), s["name"])
    etree.SubElement(vs, q("Info")).text = "A virtual machine"
    if any(s.get(k) for k in ("product", "vendor", "version", "product_url", "vendor_url")):
        ps = etree.SubElement(vs, q("ProductSection"))
        etree.SubElement(ps, q("Info")).text = "Meta-information about the installed software"
        for key, tag in (("product", "Product"), ("vendor", "Vendor"), ("version", "Version"),
                         ("product_url", "ProductUrl"), ("vendor_url", "VendorUrl")):
            if s.get(key):
                etree.SubElement(ps, q(tag)).text = s[key]
    if s.get("description"):
        an = etree.SubElement(vs, q("AnnotationSection"))
        etree.SubElement(an, q("Info")).text = "A human-readable annotation"
        etree.SubElement(an, q("Annotation")).text = s["description"]
    if s.get("license"):
        eu = etree.SubElement(vs, q("EulaSection"))
        etree.SubElement(eu, q("Info")).text = "License agreement for the virtual system"
        etree.SubElement(eu, q("License")).text = s["license"]
    osec = etree.SubElement(vs, q("OperatingSystemSection"))
    osec.set(q("id"), str(s["os_cim"]))
    etree.SubElement(osec, q("Info")).text = "The kind of installed guest operating system"
    etree.SubElement(osec, q("Description")).text = s["os_description"]
    etree.SubElement(osec, f"{{{NS_VBOX}}}OSType").text = s["os_vbox"]
    hw = etree.SubElement(vs, q("VirtualHardwareSection"))
    etree.SubElement(hw, q("Info")).text = "Virtual hardware requirements for a virtual machine"
    sysel = etree.SubElement(hw, q("System"))
    for tag, text in (("ElementName", "Virtual Hardware Family"), ("InstanceID", "0"),
                      ("VirtualSystemIdentifier", s["name"]), ("VirtualSystemType", "virtualbox-2.2")):
        etree.SubElement(sysel, f"{{{NS_VSSD}}}{tag}").text = text
    counter = [0]

    def item(kind: str = "Item", ns_item: str = NS_RASD, **fields) -> str:
        counter[0] += 1
        el = etree.SubElement(hw, q(kind))
        fields.setdefault("InstanceID", str(counter[0]))
        for tag in sorted(fields):       # CIM classes list their properties alphabetically
            v = fields[tag]
            if v is None or v == "":
                continue
            etree.SubElement(el, f"{{{ns_item}}}{tag}").text = str(v)
        return fields["InstanceID"]

    item(Caption=f"{s['cpus']} virtual CPU", Description="Number of virtual CPUs",
         ElementName=f"{s['cpus']} virtual CPU", ResourceType=RT_CPU, VirtualQuantity=s["cpus"])
    item(AllocationUnits="MegaBytes", Caption=f"{s['memory_mb']} MB of memory", Description="Memory Size",
         ElementName=f"{s['memory_mb']} MB of memory", ResourceType=RT_MEMORY, VirtualQuantity=s["memory_mb"])
    ids = {}
    for c in s["controllers"]:
        rtype, sub, addr = {"IDE": (RT_IDE, c.subtype, c.address), "SATA": (RT_OTHER_STORAGE, "AHCI", None),
                            "SCSI": (RT_SCSI, c.subtype, None),
                            "SAS": (RT_OTHER_STORAGE, "LsiLogicSAS", None),
                            "VirtioSCSI": (RT_SCSI, "VirtioSCSI", None),
                            "NVMe": (RT_OTHER_STORAGE, "NVMe", None)}[c.kind]
        ids[c.instance] = item(Address=addr, Caption=f"{c.kind.lower()}Controller{c.address}",
                               Description=f"{c.kind} Controller", ElementName=f"{c.kind.lower()}Controller"
                               f"{c.address}", ResourceSubType=sub, ResourceType=rtype)
    disk_kind, disk_ns = ("StorageItem", NS_SASD) if version == "2.0" else ("Item", NS_RASD)
    for n, d in enumerate(s["drives"]):
        if d.kind == "disk":
            item(disk_kind, disk_ns, AddressOnParent=d.address, Caption=f"disk{n + 1}",
                 Description="Disk Image", ElementName=f"disk{n + 1}", HostResource=f"/disk/{d.disk_id}",
                 Parent=ids[d.parent], ResourceType=RT_DISK)
        else:
            item(AddressOnParent=d.address, AutomaticAllocation="true", Caption="cdrom1",
                 Description="CD-ROM Drive", ElementName="cdrom1", Parent=ids[d.parent],
                 ResourceType=RT_CDROM)
    nic_kind, nic_ns = ("EthernetPortItem", NS_EPASD) if version == "2.0" else ("Item", NS_RASD)
    for nic in s["nics"]:
        item(nic_kind, nic_ns, Address=nic.mac or None, AutomaticAllocation="true",
             Caption=f"Ethernet adapter on '{nic.connection}'", Connection=nic.connection,
             ElementName=f"Ethernet adapter on '{nic.connection}'", ResourceSubType=nic.subtype,
             ResourceType=RT_ETHERNET)
    if s.get("machine") is not None:
        vs.append(_as_vbox_machine(s["machine"], ns))


def _as_vbox_machine(machine, ns: str):
    """VirtualBox's settings `Machine` element as OVF's `vbox:Machine` (children in the envelope's
    namespace, as VirtualBox writes them; `ovf:required="false"` so other readers may skip it)."""
    out = etree.Element(f"{{{NS_VBOX}}}Machine")
    out.set(f"{{{ns}}}required", "false")
    for k, v in machine.attrib.items():
        out.set(k, v)
    info = etree.SubElement(out, f"{{{ns}}}Info")
    info.text = "Complete VirtualBox machine configuration in VirtualBox format"
    for c in machine:
        out.append(_retag(c, ns))
    return out


def _retag(el, ns: str):
    if not isinstance(el.tag, str):
        return etree.Comment(el.text)
    copy = etree.Element(f"{{{ns}}}{_local(el.tag)}", attrib=dict(el.attrib))
    copy.text, copy.tail = el.text, el.tail
    for c in el:
        if isinstance(c.tag, str):
            copy.append(_retag(c, ns))
    return copy


def machine_settings_root(machine_xml, settings_ns: str):
    """The vbox:Machine element as a VirtualBox settings document root (for the settings layer)."""
    root = etree.Element(f"{{{settings_ns}}}VirtualBox", nsmap={None: settings_ns})
    m = etree.SubElement(root, f"{{{settings_ns}}}Machine")
    for k, v in machine_xml.attrib.items():
        if _local(k) != "required":
            m.set(_local(k), v)
    for c in machine_xml:
        if isinstance(c.tag, str) and _local(c.tag) != "Info":
            m.append(_retag(c, settings_ns))
    root.set("version", machine_xml.get("version", "1.19-linux"))
    return root
