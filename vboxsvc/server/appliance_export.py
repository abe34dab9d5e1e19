"""Exporting machines as an appliance: IMachine::exportTo describes a machine, IAppliance::write
turns the descriptions into an OVF (or an OVA tar) with streamOptimized VMDK disks, the
`vbox:Machine` section holding the whole machine configuration, and an optional manifest
(ApplianceImplExport.cpp's roles). Disks are read through vmm.storage (a snapshot chain is
flattened into what the machine's current state reads).
"""

from __future__ import annotations

import os
import uuid as uuidlib

import vmm.storage as st  # the only part of the VMM the service uses: image formats
from settings import machine_xml, xmlio, xmltree
from settings.version import NEW_MACHINE_MINOR, make_version

from ..api import errors as rc
from ..api.enums import ExportOptions, MachineState, NetworkAdapterType
from ..api.errors import VBoxError
from . import guestos
from .appliance_io import remove_quietly, write_manifest, write_ova
from .appliance_ovf import (
    NIC_TO_SUBTYPE,
    VBOX_TO_CIM,
    VMDK_STREAM_URI,
    OvfController,
    OvfDisk,
    OvfDrive,
    OvfFile,
    OvfNic,
)
from .appliance_ovf import write as write_ovf
from .appliance_vsd import CONTROLLER_TYPES, TYPE_OF_BUS, VSD_CONTROLLER_VALUE, T, VirtualSystemDescription
from .progress import Progress, run_in_thread

_EXPORTABLE = (MachineState.PoweredOff, MachineState.Aborted, MachineState.Saved, MachineState.AbortedSaved)


def export_to(view, appliance, location: str) -> VirtualSystemDescription:
    """IMachine::exportTo: a description of the machine's current state, added to the appliance."""
    core = view._core
    if core.data is None:
        raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE, f"The machine '{core.path}' is inaccessible")
    if core.state not in _EXPORTABLE:
        raise VBoxError(rc.VBOX_E_INVALID_VM_STATE, f"Cannot export the machine '{core.name}' while it is "
                                                    f"{core.state.name}", "IMachine", "MachineWrap")
    d = core.data
    vsd = VirtualSystemDescription()
    vsd.core = core
    vsd.add(T.Name, "", d.name, d.name)
    os_type = guestos.lookup(d.os_type)
    vsd.add(T.OS, "", str(VBOX_TO_CIM.get(d.os_type, 101 if os_type and os_type.is64_bit else 1)), d.os_type)
    vsd.add(T.CPU, "", str(d.hardware.cpu_count), str(d.hardware.cpu_count))
    vsd.add(T.Memory, "", str(d.hardware.memory_mb << 20), str(d.hardware.memory_mb))
    if d.description:
        vsd.add(T.Description, "", d.description, d.description)
    disk_no = sum(len(v.by_type(T.HardDiskImage)) for v in appliance.virtual_system_descriptions)
    for c in d.hardware.storage_controllers:
        if c.bus not in TYPE_OF_BUS:
            continue
        vsd.add(TYPE_OF_BUS[c.bus], c.name, "",
                VSD_CONTROLLER_VALUE.get(c.controller_type, c.controller_type))
        idx = len(vsd.entries) - 1
        for dev in c.devices:
            channel = dev.port * 2 + dev.device if c.bus == "IDE" else dev.port
            if dev.type == "HardDisk" and dev.medium is not None:
                m = core.vbox.media.by_id.get(str(dev.medium))
                if m is None:
                    raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND,
                                    f"Could not find the hard disk {{{dev.medium}}} of "
                                                                f"the machine '{d.name}'")
                disk_no += 1
                vsd.add(T.HardDiskImage, str(dev.medium), f"disk{disk_no}", m.location,
                        f"controller={idx};channel={channel}")
            elif dev.type == "DVD":
                vsd.add(T.CDROM, c.name, "", "", f"controller={idx};channel={channel}")
    for a in d.hardware.network_adapters:
        if a.enabled:
            vsd.add(T.NetworkAdapter, "", a.attachment_type, str(int(NetworkAdapterType[a.type])),
                    f"slot={a.slot};type={a.attachment_type}")
    appliance.virtual_system_descriptions.append(vsd)
    return vsd


def _machine_element(core, vsd, opts: set):
    """The machine's current state in VirtualBox's settings XML (no snapshots, saved state or media
    registry: the appliance's DiskSection carries the disks)."""
    s = core.data.model_copy(deep=True)
    s.name = vsd.value(T.Name) or s.name
    s.snapshot, s.current_snapshot, s.state_file = None, None, ""
    s.media_registry = type(s.media_registry)()
    if vsd.value(T.Description):
        s.description = vsd.value(T.Description)
    for a in s.hardware.network_adapters:
        if ExportOptions.StripAllMACs in opts or (ExportOptions.StripAllNonNATMACs in opts
                                                   and a.attachment_type != "NAT"):
            a.mac = ""
    # attachments keep the medium UUIDs the DiskSection names (vbox:uuid)
    tree = xmlio.new_document(make_version(NEW_MACHINE_MINOR))
    machine_xml.write_machine(tree.getroot(), s, NEW_MACHINE_MINOR, core.path.parent)
    xmltree.strip_marks(tree.getroot())     # the writer's own bookkeeping, as a settings save strips it
    m = tree.getroot()[0]
    m.set("version", tree.getroot().get("version"))
    return m


def write_appliance(appliance, fmt: str, opts: set, path: str):

    vbox = appliance._vbox
    if os.path.exists(path):
        raise VBoxError(rc.VBOX_E_FILE_ERROR, f"The appliance file '{path}' already exists",
                        "IAppliance", "ApplianceWrap")
    ova = path.lower().endswith(".ova")
    base = os.path.splitext(os.path.basename(path))[0]
    out_dir = os.path.dirname(path)
    work_dir = f"{path}.{os.getpid()}.parts" if ova else out_dir
    version = fmt.split("-")[1]
    resolver = vbox.media.resolver()
    # everything read from the registries is gathered here, on the bus thread
    systems, disks_todo = [], []
    files, ovf_disks = [], []
    n = 0
    for vsd in appliance.virtual_system_descriptions:
        core = vsd.core
        if core is None:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE, "A virtual system description was not made by "
                                                            "IMachine::exportTo", "IAppliance",
                            "ApplianceWrap")
        controllers, drives, index_of = [], [], {}
        for i, e in enumerate(vsd.entries):
            if e.type in CONTROLLER_TYPES and e.enabled:
                bus = CONTROLLER_TYPES[e.type]
                kind = {"PCIe": "NVMe"}.get(bus, bus)
                address = sum(1 for c in controllers if c.kind == kind)
                controllers.append(OvfController(str(i), kind, e.vbox if kind != "SATA" else "AHCI", address))
                index_of[i] = controllers[-1]
        for e in vsd.entries:
            if e.type not in (T.HardDiskImage, T.CDROM) or not e.enabled:
                continue
            kv = dict(p.split("=", 1) for p in e.extra.split(";") if "=" in p)
            c = index_of.get(int(kv.get("controller", "-1")))
            if c is None:
                continue
            channel = int(kv.get("channel", "0"))
            address = channel % 2 if c.kind == "IDE" else channel
            if e.type == T.CDROM:
                drives.append(OvfDrive("cdrom", c.instance, address))
                continue
            n += 1
            name = f"{base}-disk{n:03d}.vmdk"
            medium = vbox.media.by_id.get(e.ref)
            size = medium.logical_size if medium is not None else 0
            disk_id = f"vmdisk{n}"
            files.append(OvfFile(f"file{n}", name))
            ovf_disks.append(OvfDisk(disk_id, size, format=VMDK_STREAM_URI, file_ref=f"file{n}",
                                     vbox_uuid=e.ref))
            drives.append(OvfDrive("disk", c.instance, address, disk_id))
            disks_todo.append((e.vbox, os.path.join(work_dir, name), files[-1], size))
        nics = []
        for e in vsd.by_type(T.NetworkAdapter):
            if not e.enabled:
                continue
            kv = dict(p.split("=", 1) for p in e.extra.split(";") if "=" in p)
            try:
                kind = NetworkAdapterType(int(e.vbox)).name
            except ValueError:
                kind = "I82540EM"
            nics.append(OvfNic(kv.get("type", e.ovf or "NAT"), NIC_TO_SUBTYPE.get(kind, "E1000")))
        os_id = vsd.value(T.OS, core.data.os_type)
        t = guestos.lookup(os_id)
        systems.append({
            "name": vsd.value(T.Name, core.data.name),
            "os_cim": VBOX_TO_CIM.get(os_id, 101 if t and t.is64_bit
                                                                                  else 1),
            "os_vbox": os_id, "os_description": t.description if t else os_id,
            "cpus": int(vsd.value(T.CPU, "1")), "memory_mb": int(vsd.value(T.Memory, "128")),
            "controllers": controllers, "drives": drives, "nics": nics,
            "product": vsd.value(T.Product), "product_url": vsd.value(T.ProductUrl),
            "vendor": vsd.value(T.Vendor),
            "vendor_url": vsd.value(T.VendorUrl), "version": vsd.value(T.Version),
            "description": vsd.value(T.Description), "license": vsd.value(T.License),
            "machine": _machine_element(core, vsd, opts)})
    total = sum(size for *_x, size in disks_todo) or 1
    progress = Progress(f"Exporting to '{path}'", initiator=appliance, cancelable=True)
    made: list[str] = []

    def work(p):
        try:
            if ova:
                os.makedirs(work_dir)
                made.append(work_dir)
            done = 0
            for src, dst, f, size in disks_todo:
                if os.path.exists(dst):
                    raise VBoxError(rc.VBOX_E_FILE_ERROR, f"The file '{dst}' already exists")

                def report(frac, done=done, size=size):
                    if p.canceled:
                        raise VBoxError(rc.E_FAIL, "Operation was canceled")
                    p.set_percent(min(99, int((done + frac * size) * 100 / total)))
                made.append(dst)
                img = st.open_image(src, read_only=True, parent_resolver=resolver)
                try:
                    st.clone_image(img, dst, fmt="VMDK", variant="stream", uuid=str(uuidlib.uuid4()),
                                   progress=report)
                finally:
                    img.close()
                f.size = os.path.getsize(dst)
                done += size
            ovf_name = base + ".ovf"
            ovf_path = os.path.join(work_dir, ovf_name)
            made.append(ovf_path)
            with open(ovf_path, "wb") as out:
                out.write(write_ovf(version, files, ovf_disks, systems))
            parts = [(ovf_name, ovf_path)] + [(os.path.basename(d), d) for _s, d, _f, _z in disks_todo]
            if ExportOptions.CreateManifest in opts:
                mf_path = os.path.join(work_dir, base + ".mf")
                made.append(mf_path)
                write_manifest(mf_path, parts, "SHA256" if version == "2.0" else "SHA1")
                parts.append((base + ".mf", mf_path))
            if ova:
                write_ova(path, parts)
                remove_quietly([work_dir])
        except st.DiskImageError as e:
            remove_quietly(reversed(made))
            raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Could not export the disk image: {e}") from None
        except BaseException:
            remove_quietly(reversed(made))
            raise
    return run_in_thread(progress, work)
