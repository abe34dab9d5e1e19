"""Importing an appliance: interpreting the descriptor into virtual system descriptions (what
`VBoxManage import -n` lists) and turning the final descriptions into registered machines with
their disks converted into the machine folder (ApplianceImplImport.cpp's roles).

When the descriptor carries VirtualBox's own `vbox:Machine` section, that configuration is the
machine (read by the settings layer) and the OVF items only describe it for other readers, as in
VirtualBox; otherwise the machine is built from the OVF hardware items.
"""

from __future__ import annotations

import logging
import os
import uuid as uuidlib
from pathlib import Path

import vmm.storage as st  # the only part of the VMM the service uses: image formats
from settings import machine_xml
from settings.errors import SettingsError
from settings.models import (
    AttachedDevice,
    MediaRegistry,
    NetworkAdapter,
    StorageController,
    generate_mac,
    now_utc,
)
from settings.version import parse_version
from settings.xmltree import NS

from ..api import errors as rc
from ..api.enums import DeviceType, ImportOptions, NetworkAdapterType
from ..api.errors import VBoxError
from . import guestos
from .appliance_ovf import CIM_TO_VBOX, NIC_SUBTYPES, OvfEnvelope, OvfSystem, fail, machine_settings_root
from .appliance_vsd import CONTROLLER_TYPES, TYPE_OF_BUS, VSD_CONTROLLER_VALUE, T, VirtualSystemDescription
from .progress import Progress, run_in_thread

log = logging.getLogger("vboxsvc.appliance")

# VSD value of a controller (VirtualBox's names) -> settings controller type
CONTROLLER_MODEL = {"PIIX3": "PIIX3", "PIIX4": "PIIX4", "ICH6": "ICH6", "AHCI": "IntelAhci",
                    "LsiLogic": "LsiLogic", "BusLogic": "BusLogic", "LsiLogicSas": "LsiLogicSas",
                    "VirtioSCSI": "VirtioSCSI", "NVMe": "NVMe"}
CONTROLLER_NAMES = {"IDE": "IDE Controller", "SATA": "SATA Controller", "SCSI": "SCSI Controller",
                    "SAS": "SAS Controller", "VirtioSCSI": "VirtioSCSI Controller", "PCIe": "NVMe Controller"}
ATTACHMENTS = {"nat": "NAT", "bridged": "Bridged", "hostonly": "HostOnly", "internal": "Internal",
               "generic": "Generic", "natnetwork": "NATNetwork"}


# ---- interpretation -----------------------------------------------------------------------------


def _os_type(sys_: OvfSystem, settings) -> str:
    for cand in ((settings.os_type if settings else ""), sys_.os_vbox, CIM_TO_VBOX.get(sys_.os_cim, "")):
        if cand and guestos.lookup(cand) is not None:
            return guestos.lookup(cand).id
    return "Other_64" if sys_.os_cim in (101, 102) else "Other"


def _unique_name(vbox, name: str, taken: set[str]) -> str:
    def used(n):
        return n in taken or vbox.find_core(n) is not None
    if not used(name):
        return name
    i = 1
    while used(f"{name}_{i}"):
        i += 1
    return f"{name}_{i}"


def _read_settings(sys_: OvfSystem, path: str):
    if sys_.machine_xml is None:
        return None
    root = machine_settings_root(sys_.machine_xml, NS)
    version = parse_version(root.get("version", ""))
    if version is None:
        raise fail(f"The vbox:Machine section of '{path}' has an unknown settings version "
                   f"'{root.get('version')}'")
    try:
        return machine_xml.read_machine(root, version.minor, Path(os.path.dirname(path)))
    except SettingsError as e:
        raise fail(f"The vbox:Machine section of '{path}' is invalid: {e.problem}") from None


def interpret(vbox, env: OvfEnvelope, path: str, warnings: list[str]) -> list[VirtualSystemDescription]:
    out = []
    names: set[str] = set()
    base = vbox.system_properties.default_machine_folder
    for sys_ in env.systems:
        settings = _read_settings(sys_, path)
        vsd = VirtualSystemDescription()
        vsd.system, vsd.settings = sys_, settings
        os_id = _os_type(sys_, settings)
        vsd.add(T.OS, "", str(sys_.os_cim), os_id)
        name = _unique_name(vbox, settings.name if settings else (sys_.name or "vm"), names)
        names.add(name)
        vsd.add(T.Name, "", sys_.name, name)
        group = settings.groups[0] if settings and settings.groups else "/"
        vsd.add(T.PrimaryGroup, "", "", group)
        vsd.add(T.SettingsFile, "", "", vbox.compose_machine_filename(name, group, "", base))
        vsd.add(T.BaseFolder, "", "", base)
        for t, v in ((T.Product, sys_.product), (T.ProductUrl, sys_.product_url), (T.Vendor, sys_.vendor),
                     (T.VendorUrl, sys_.vendor_url), (T.Version, sys_.version)):
            if v:
                vsd.add(t, "", v, v)
        desc = (settings.description if settings else "") or sys_.description
        if desc:
            vsd.add(T.Description, "", desc, desc)
        if sys_.license:
            vsd.add(T.License, "", sys_.license, sys_.license)
        cpus = settings.hardware.cpu_count if settings else sys_.cpus
        vsd.add(T.CPU, "", str(sys_.cpus), str(cpus))
        memory = settings.hardware.memory_mb if settings else sys_.memory_mb
        if not memory:
            memory = guestos.get(os_id).recommended_ram
        vsd.add(T.Memory, "", str(sys_.memory_mb << 20), str(memory))
        if settings is not None:
            _describe_from_settings(vsd, settings, env, path, warnings)
        else:
            _describe_from_items(vsd, sys_, env, path, warnings)
        out.append(vsd)
    return out


def _nic_value(adapter_type: str) -> str:
    return str(int(NetworkAdapterType[adapter_type]))


def _describe_from_items(vsd, sys_: OvfSystem, env: OvfEnvelope, path: str, warnings: list[str]) -> None:
    """VirtualBox's listing order: network adapters, CD-ROMs, controllers (one entry per OVF
    controller item; the two IDE items of a PIIX4 become one controller on import), hard disks."""
    for nic in sys_.nics:
        kind = NIC_SUBTYPES.get(nic.subtype.lower(), "I82540EM")
        vsd.add(T.NetworkAdapter, "", nic.connection, _nic_value(kind), f"type={_attachment(nic.connection)}")
    cdroms = [d for d in sys_.drives if d.kind == "cdrom"]
    first = len(vsd.entries) + len(cdroms)
    index_of: dict[str, tuple[int, str, int]] = {}
    values = []
    for c in sys_.controllers:
        bus = "PCIe" if c.kind == "NVMe" else c.kind
        value = {"IDE": c.subtype if c.subtype in ("PIIX3", "PIIX4", "ICH6") else "PIIX4", "SATA": "AHCI",
                 "SCSI": "BusLogic" if c.subtype.lower() == "buslogic" else "LsiLogic", "SAS": "LsiLogicSas",
                 "VirtioSCSI": "VirtioSCSI", "PCIe": "NVMe"}[bus]
        index_of[c.instance] = (first + len(values), bus, c.address)
        values.append((TYPE_OF_BUS[bus], c.instance, value))

    def place(d) -> tuple[int, int] | None:
        if d.parent not in index_of:
            warnings.append(f"The drive at address {d.address} of '{sys_.name}' has no known controller "
                            f"'{d.parent}'; it is ignored")
            return None
        idx, bus, caddr = index_of[d.parent]
        return idx, (caddr * 2 + d.address if bus == "IDE" else d.address)
    for d in cdroms:
        where = place(d)
        extra = f"controller={where[0]};channel={where[1]}" if where else ""
        vsd.add(T.CDROM, d.parent, "", "", extra)
    for t, ref, value in values:
        vsd.add(t, ref, "", value)
    for d in sys_.drives:
        if d.kind == "disk":
            where = place(d)
            if where is not None:
                _add_disk(vsd, env, d.disk_id, where[0], where[1], path)


def _describe_from_settings(vsd, s, env: OvfEnvelope, path: str, warnings: list[str]) -> None:
    """From VirtualBox's own machine section: its adapters, DVD drives, controllers and disks."""
    for a in s.hardware.network_adapters:
        if a.enabled:
            vsd.add(T.NetworkAdapter, "", a.attachment_type, _nic_value(a.type),
                    f"slot={a.slot};type={a.attachment_type}")
    disks_by_uuid = {d.vbox_uuid.strip("{}").lower(): d for d in env.disks.values() if d.vbox_uuid}
    controllers = [c for c in s.hardware.storage_controllers if c.bus in TYPE_OF_BUS]
    for c in s.hardware.storage_controllers:
        if c.bus not in TYPE_OF_BUS:
            warnings.append(f"Storage controller '{c.name}' ({c.bus}) is not imported")
    n_dvd = sum(1 for c in controllers for dev in c.devices if dev.type == "DVD")
    first = len(vsd.entries) + n_dvd
    all_disks = [dev for c in controllers for dev in c.devices if dev.type == "HardDisk"
                 and dev.medium is not None]

    def channel(c, dev) -> int:
        return dev.port * 2 + dev.device if c.bus == "IDE" else dev.port
    for k, c in enumerate(controllers):
        for dev in c.devices:
            if dev.type == "DVD":
                vsd.add(T.CDROM, c.name, "", "", f"controller={first + k};channel={channel(c, dev)}")
    for c in controllers:
        vsd.add(TYPE_OF_BUS[c.bus], c.name, "",
                VSD_CONTROLLER_VALUE.get(c.controller_type, c.controller_type))
    for k, c in enumerate(controllers):
        for dev in c.devices:
            if dev.type != "HardDisk" or dev.medium is None:
                continue
            d = disks_by_uuid.get(str(dev.medium).lower())
            if d is None:
                if len(env.disks) == 1 and len(all_disks) == 1:
                    d = next(iter(env.disks.values()))
                else:
                    raise fail(f"The vbox:Machine section of '{path}' attaches the disk "
                               f"{{{dev.medium}}}, which "
                               "the DiskSection does not list")
            _add_disk(vsd, env, d.disk_id, first + k, channel(c, dev), path)


def _add_disk(vsd, env: OvfEnvelope, disk_id: str, controller_index: int, channel: int, path: str) -> None:
    d = env.disks[disk_id]
    f = env.files.get(d.file_ref)
    if f is None:
        raise fail(f"The disk '{disk_id}' of '{path}' has no file")
    folder = os.path.dirname(vsd.value(T.SettingsFile))
    target = os.path.join(folder, f.href)
    vsd.add(T.HardDiskImage, disk_id, f.href, target, f"controller={controller_index};channel={channel}")


def _attachment(connection: str) -> str:
    return ATTACHMENTS.get(connection.replace(" ", "").replace("-", "").lower(), "NAT")


# ---- importing ----------------------------------------------------------------------------------


class _Plan:
    """What one virtual system becomes: settings file, name, and disks (source, target, uuid)."""

    def __init__(self, vsd: VirtualSystemDescription):
        self.vsd = vsd
        self.disks: list[tuple] = []    # (entry, source href, target path, format, new uuid)


def _final_settings_file(vbox, vsd) -> str:
    """The settings file: the user's, or recomposed when the name, group or base folder changed
    but the suggested file name was kept (so an imported VM named X lives in <base>/X/)."""
    [sf] = vsd.by_type(T.SettingsFile) or [None]
    name, group = vsd.value(T.Name), vsd.value(T.PrimaryGroup, "/") or "/"
    base = vsd.value(T.BaseFolder) or vbox.system_properties.default_machine_folder
    if sf is not None and sf.vbox and sf.vbox != sf.suggested:
        return sf.vbox
    return vbox.compose_machine_filename(name, group, "", base)


def _plan(vbox, appliance, opts: set) -> list[_Plan]:
    plans = []
    for vsd in appliance.virtual_system_descriptions:
        p = _Plan(vsd)
        name = vsd.value(T.Name).strip()
        if not name:
            raise VBoxError(rc.E_INVALIDARG, "The virtual machine name must not be empty")
        if vbox.find_core(name) is not None:
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE, f"A machine named '{name}' already exists")
        try:
            cpus, memory = int(vsd.value(T.CPU, "1")), int(vsd.value(T.Memory, "0"))
        except ValueError:
            raise VBoxError(rc.E_INVALIDARG, "The CPU count and memory size must be numbers") from None
        if not 1 <= cpus <= 64 or not 0 <= memory <= 2097152:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid CPU count {cpus} or memory size {memory} MB for the "
                                             f"machine '{name}'")
        p.settings_file = _final_settings_file(vbox, vsd)
        if os.path.exists(p.settings_file):
            raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Machine settings file '{p.settings_file}' already exists")
        folder = os.path.dirname(p.settings_file)
        old_folder = (
            os.path.dirname(vsd.by_type(T.SettingsFile)[0].suggested)
            if vsd.by_type(T.SettingsFile)
            else folder
        )
        for e in vsd.by_type(T.HardDiskImage):
            if not e.enabled:
                continue
            target = e.vbox
            if os.path.dirname(target) == old_folder and folder != old_folder:
                # a disk meant for the suggested machine folder follows the machine to its real one
                target = os.path.join(folder, os.path.basename(target))
            if not os.path.isabs(target):
                raise VBoxError(rc.E_INVALIDARG, f"The disk target path '{target}' is not fully qualified")
            fmt = "VDI" if ImportOptions.ImportToVDI in opts or target.lower().endswith(".vdi") else "VMDK"
            if ImportOptions.ImportToVDI in opts and not target.lower().endswith(".vdi"):
                target = os.path.splitext(target)[0] + ".vdi"
            if os.path.exists(target):
                raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Cannot create the disk image '{target}': the file "
                                                      "already exists")
            for m in vbox.media.by_id.values():
                if m.location == target and m.registry is not None:
                    raise VBoxError(rc.VBOX_E_OBJECT_IN_USE, f"A medium at '{target}' is already registered")
            f = appliance.envelope.files.get(appliance.envelope.disks[e.ref].file_ref) if e.ref in \
                appliance.envelope.disks else None
            if f is not None and f.compression:
                raise VBoxError(rc.VBOX_E_NOT_SUPPORTED,
                                f"The disk file '{f.href}' is {f.compression}-compressed; "
                                                         "compressed appliance files are not supported")
            p.disks.append((e, e.ovf, target, fmt, str(uuidlib.uuid4())))
        plans.append(p)
    targets = [d[2] for p in plans for d in p.disks]
    if len(set(targets)) != len(targets):
        raise VBoxError(rc.E_INVALIDARG, "Two disks of the appliance would be imported to the same file")
    return plans


def import_machines(appliance, opts: set):
    from .appliance_io import ApplianceSource, remove_quietly

    vbox = appliance._vbox
    plans = _plan(vbox, appliance, opts)
    total = sum(appliance.envelope.disks[e.ref].capacity for p in plans for e, *_ in p.disks) or 1
    progress = Progress(f"Importing appliance '{appliance.path}'", initiator=appliance, cancelable=True)
    appliance._busy = True
    created: list[str] = []

    def work(p):
        src = ApplianceSource(appliance.path)
        done_bytes = 0
        try:
            src.verify_manifest()
            for plan in plans:
                for entry, href, target, fmt, uid in plan.disks:
                    cap = appliance.envelope.disks[entry.ref].capacity
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    base = done_bytes

                    def report(frac, base=base, cap=cap):
                        if p.canceled:
                            raise VBoxError(rc.E_FAIL, "Operation was canceled")
                        p.set_percent(min(99, int((base + frac * cap) * 100 / total)))
                    _convert_disk(st, src, href, target, fmt, uid, report, created)
                    done_bytes += cap
        except st.DiskImageError as e:
            remove_quietly(reversed(created))
            raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Could not import the disk image: {e}") from None
        except BaseException:
            remove_quietly(reversed(created))
            raise
        finally:
            src.close()

    def done(_r, err):
        appliance._busy = False
        if err is not None:
            return
        try:
            for plan in plans:
                appliance.machines.append(_create_machine(vbox, plan, appliance.envelope, opts))
        except BaseException:
            remove_quietly(reversed(created))
            raise
    return run_in_thread(progress, work, done)


def _convert_disk(st, src, href: str, target: str, fmt: str, uid: str, report, created: list[str]) -> None:
    """Source disk image (read in place from a folder, or taken out of the OVA first) -> target."""
    local = src.local_path(href)
    spool = None
    span = src.member_span(href) if local is None else None
    if span is not None:                # a sparse VMDK inside the OVA: read in place, no copy
        try:
            img = st.VmdkImage.open_in_file(src.path, *span)
        except st.DiskImageError:
            img = None
        if img is not None:
            try:
                created.append(target)
                st.clone_image(img, target, fmt=fmt, uuid=uid, variant="standard" if fmt == "VMDK" else None,
                               progress=report)
            finally:
                img.close()
            return
    if local is None:
        spool = f"{target}.{os.getpid()}.ova-part"
        created.append(spool)
        src.extract(href, spool)
        local = spool
    try:
        img = st.open_image(local, read_only=True)
        try:
            if getattr(img, "format", "") not in ("VMDK", "VDI"):
                raise st.DiskImageError(f"{href}: the appliance's disk is neither VMDK nor VDI")
            created.append(target)
            st.clone_image(img, target, fmt=fmt, uuid=uid, variant="standard" if fmt == "VMDK" else None,
                           progress=report)
        finally:
            img.close()
    finally:
        if spool is not None and os.path.exists(spool):
            os.unlink(spool)
            created.remove(spool)


def _macs(adapters, opts: set) -> None:
    for a in adapters:
        keep = ImportOptions.KeepAllMACs in opts or (ImportOptions.KeepNATMACs in opts
                                                     and a.attachment_type == "NAT")
        if not keep or not a.mac:
            a.mac = generate_mac()


def _create_machine(vbox, plan: _Plan, env: OvfEnvelope, opts: set) -> str:
    from .machine import MachineCore, new_machine_settings
    from .media import Medium as MediumObject

    vsd = plan.vsd
    uid = uuidlib.uuid4()
    name = vsd.value(T.Name)
    group = vsd.value(T.PrimaryGroup, "/") or "/"
    os_type = guestos.lookup(vsd.value(T.OS)) or guestos.get("Other")
    disk_of_entry = {id(e): (target, fmt, new) for e, _h, target, fmt, new in plan.disks}
    try:
        cpus = int(vsd.value(T.CPU, "1"))
        memory = int(vsd.value(T.Memory, "0"))
    except ValueError:
        raise VBoxError(rc.E_INVALIDARG, "The CPU count and memory size must be numbers") from None
    if vsd.settings is not None:
        s = vsd.settings.model_copy(deep=True)
        s.uuid, s.name, s.groups, s.os_type = uid, name, [group], os_type.id
        s.snapshot, s.current_snapshot, s.state_file = None, None, ""
        s.current_state_modified, s.aborted, s.last_state_change = False, False, now_utc()
        s.hardware.hardware_uuid = None
        _attach_from_settings(s, vsd, env, disk_of_entry)
    else:
        s = new_machine_settings(uid, name, [group], os_type, False)
        _attach_from_items(s, vsd, disk_of_entry)
    if memory:
        s.hardware.memory_mb = memory
    s.hardware.cpu_count = max(1, cpus)
    desc = vsd.value(T.Description)
    if desc:
        s.description = desc
    s.media_registry = MediaRegistry()
    _macs(s.hardware.network_adapters, opts)
    try:        # the appliance's values (memory, CPUs, ...) must make a valid machine before anything is kept
        s = type(s).model_validate(s.model_dump())
    except ValueError as e:
        raise VBoxError(rc.E_INVALIDARG, f"The appliance describes an invalid machine '{name}': "
                                         f"{str(e).splitlines()[-1].strip()}") from None
    # the imported disks belong to the new machine's media registry (saved with its .vbox)
    media = [MediumObject(vbox.media, new, target, fmt, DeviceType.HardDisk)
             for _e, _h, target, fmt, new in plan.disks]
    core = MachineCore(vbox, Path(plan.settings_file), s, mfile=None)
    try:
        for m in media:
            vbox.media.register(m, str(uid))
        vbox.register_machine(core.view)
    except (VBoxError, SettingsError) as e:
        for m in media:
            if m.id in vbox.media.by_id:
                vbox.media.unregister(m)
        if isinstance(e, VBoxError):
            raise
        raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Could not save the imported machine '{name}': {e}") from None
    return str(uid)


def _attach_from_settings(s, vsd, env: OvfEnvelope, disk_of_entry) -> None:
    """Keep the configured controllers; point hard disk attachments at the imported disks, drop
    what the user disabled, and empty removable drives (their media are not in the appliance)."""
    wanted = {e.ref: e for e in vsd.entries if e.type in CONTROLLER_TYPES}
    by_uuid = {d.vbox_uuid.strip("{}").lower(): d.disk_id for d in env.disks.values() if d.vbox_uuid}
    disk_entries = vsd.by_type(T.HardDiskImage)
    controllers = []
    for c in s.hardware.storage_controllers:
        e = wanted.get(c.name)
        if e is None or not e.enabled:
            continue
        if e.vbox and CONTROLLER_MODEL.get(e.vbox, e.vbox) != c.controller_type:
            model = CONTROLLER_MODEL.get(e.vbox)
            if model is not None and model in ("BusLogic", "LsiLogic") and c.bus == "SCSI":
                c.controller_type = model
        devices = []
        for dev in c.devices:
            if dev.type == "HardDisk" and dev.medium is not None:
                disk_id = by_uuid.get(str(dev.medium).lower())
                if disk_id is None and len(disk_entries) == 1:
                    disk_id = disk_entries[0].ref
                entry = next((x for x in disk_entries if x.ref == disk_id), None)
                if entry is None or id(entry) not in disk_of_entry:
                    continue
                dev.medium = uuidlib.UUID(disk_of_entry[id(entry)][2])
            elif dev.type in ("DVD", "Floppy"):
                dev.medium = None
                dev.host_drive = ""
            devices.append(dev)
        c.devices = devices
        controllers.append(c)
    s.hardware.storage_controllers = controllers


def _attach_from_items(s, vsd, disk_of_entry) -> None:
    controllers: dict[int, StorageController] = {}
    ide = None              # the OVF's primary and secondary IDE items are one PIIX4 with two channels
    for i, e in enumerate(vsd.entries):
        if e.type in CONTROLLER_TYPES and e.enabled:
            bus = CONTROLLER_TYPES[e.type]
            if bus == "IDE" and ide is not None:
                controllers[i] = ide
                continue
            model = CONTROLLER_MODEL.get(e.vbox) or {"IDE": "PIIX4", "SATA": "IntelAhci", "SCSI": "LsiLogic",
                                                     "SAS": "LsiLogicSas", "VirtioSCSI": "VirtioSCSI",
                                                     "PCIe": "NVMe"}[bus]
            controllers[i] = StorageController(name=CONTROLLER_NAMES[bus], bus=bus, controller_type=model)
            if bus == "IDE":
                ide = controllers[i]
    for e in vsd.entries:
        if e.type not in (T.HardDiskImage, T.CDROM) or not e.enabled:
            continue
        kv = dict(p.split("=", 1) for p in e.extra.split(";") if "=" in p)
        try:
            c = controllers.get(int(kv.get("controller", "-1")))
            channel = int(kv.get("channel", "0"))
        except ValueError:
            continue
        if c is None:
            continue
        port, device = (channel // 2, channel % 2) if c.bus == "IDE" else (channel, 0)
        if e.type == T.CDROM:
            c.devices.append(AttachedDevice(type="DVD", port=port, device=device))
        elif id(e) in disk_of_entry:
            c.devices.append(AttachedDevice(type="HardDisk", port=port, device=device,
                                            medium=uuidlib.UUID(disk_of_entry[id(e)][2])))
        if c.bus == "SATA" and port >= c.port_count:
            c.port_count = port + 1
    unique = []
    for c in controllers.values():
        if all(c is not u for u in unique):
            unique.append(c)
    s.hardware.storage_controllers = unique
    nics = [e for e in vsd.by_type(T.NetworkAdapter) if e.enabled]
    adapters = []
    for slot in range(8):
        if slot < len(nics):
            e = nics[slot]
            try:
                kind = NetworkAdapterType(int(e.vbox)).name
            except ValueError:
                kind = "I82540EM"
            kv = dict(p.split("=", 1) for p in e.extra.split(";") if "=" in p)
            att = ATTACHMENTS.get(kv.get("type", "NAT").lower(), "NAT")
            adapters.append(NetworkAdapter(slot=slot, enabled=True, type=kind, attachment_type=att,
                                           mac=generate_mac()))
        else:
            adapters.append(NetworkAdapter(slot=slot, type=s.hardware.network_adapters[slot].type))
    s.hardware.network_adapters = adapters
