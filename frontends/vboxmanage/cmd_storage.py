"""storagectl and storageattach (VBoxManageStorageController.cpp): controllers and attachments."""

import os
import re

import click

from . import names
from .api import Api, call, find_machine, locked
from .cli import CONTEXT, choice, onoff, uint, vm_argument
from .cmd_medium import find_registered
from .output import CommandFailed, SyntaxFailure, msg_lines

_FILE = "VBoxManageStorageController.cpp"
_UUID = re.compile(r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$")


@click.command("storagectl", context_settings=CONTEXT)
@vm_argument()
@click.option("--name", "-name")
@click.option("--add", "-add")
@click.option("--controller", "-controller")
@click.option("--portcount", "-portcount")
@click.option("--hostiocache", "-hostiocache")
@click.option("--bootable", "-bootable")
@click.option("--rename")
@click.option("--remove", "-remove", is_flag=True)
def storagectl(vm, name, add, controller, portcount, hostiocache, bootable, rename, remove):
    cmd = "storagectl"
    if not name:
        raise SyntaxFailure("Storage controller name not specified", cmd)
    bus = choice("--add", add, names.STORAGE_BUS_BY_ARG, cmd) if add else None
    ctl_type = choice("--controller", controller, names.CONTROLLER_TYPE_BY_ARG, cmd) if controller else None
    ports = uint("--portcount", portcount, cmd) if portcount is not None else None
    cache = onoff("--hostiocache", hostiocache, cmd) if hostiocache is not None else None
    boot = onoff("--bootable", bootable, cmd) if bootable is not None else None
    from vboxsvc.api import enums as e

    machine = find_machine(vm, 1117, _FILE)
    with locked(machine, "Write", "LockMachine(a->session, LockType_Write)", 1121, _FILE) as session:
        m = session.machine
        if remove:
            with call("machine->RemoveStorageController(Bstr(pszCtl).raw())", 1140, _FILE):
                m.remove_storage_controller(name)
        else:
            if bus is not None:
                with call("machine->AddStorageController(Bstr(pszCtl).raw(), StorageBus_X, ctl.asOutParam())",
                          1160, _FILE):
                    ctl = m.add_storage_controller(name, e.StorageBus(bus))
            else:
                with call("machine->GetStorageControllerByName(Bstr(pszCtl).raw(), ctl.asOutParam())",
                          1240, _FILE):
                    ctl = m.get_storage_controller_by_name(name)
            with call("ctl->COMSETTER(ControllerType)(StorageControllerType_X)", 1260, _FILE):
                if ctl_type is not None:
                    ctl.controller_type = e.StorageControllerType(ctl_type)
            with call("ctl->COMSETTER(PortCount)(portcount)", 1290, _FILE):
                if ports is not None:
                    ctl.port_count = ports
            with call("ctl->COMSETTER(UseHostIOCache)(fUseHostIOCache)", 1300, _FILE):
                if cache is not None:
                    ctl.use_host_io_cache = cache
            with call("machine->SetStorageControllerBootable(Bstr(pszCtl).raw(), fBootable)", 1320, _FILE):
                if boot is not None:
                    m.set_storage_controller_bootable(name, boot)
            with call("ctl->COMSETTER(Name)(Bstr(pszCtlNewName).raw())", 1335, _FILE):
                if rename:
                    ctl.name = rename
        with call("machine->SaveSettings()", 1350, _FILE):
            m.save_settings()
    return 0


@click.command("storageattach", context_settings=CONTEXT)
@vm_argument()
@click.option("--storagectl", "-storagectl")
@click.option("--port", "-port")
@click.option("--device", "-device")
@click.option("--type", "-type", "dev_type")
@click.option("--medium", "-medium")
@click.option("--mtype", "-mtype")
@click.option("--nonrotational")
@click.option("--discard")
@click.option("--hotpluggable")
@click.option("--passthrough", "-passthrough")
@click.option("--tempeject")
@click.option("--forceunmount", is_flag=True)
@click.option("--setuuid")
@click.option("--setparentuuid")
@click.option("--comment")
def storageattach(vm, storagectl, port, device, dev_type, medium, mtype, nonrotational, discard, hotpluggable,
                  passthrough, tempeject, forceunmount, setuuid, setparentuuid, comment):
    cmd = "storageattach"
    if not storagectl:
        raise SyntaxFailure("Storage controller name not specified", cmd)
    flags = {k: onoff(f"--{k}", v, cmd)
             for k, v in (("nonrotational", nonrotational), ("discard", discard),
                          ("hotpluggable", hotpluggable), ("passthrough", passthrough),
                          ("tempeject", tempeject))
             if v is not None}
    kind = choice("--type", dev_type, names.DEVICE_TYPE_BY_ARG, cmd) if dev_type else None
    medium_type = choice("--mtype", mtype, names.MEDIUM_TYPE_BY_ARG, cmd) if mtype else None
    from vboxsvc.api import enums as e

    vbox = Api.vbox()
    machine = find_machine(vm, 140, _FILE)
    with locked(machine, "Shared", "LockMachine(a->session, LockType_Shared)", 160, _FILE) as session:
        m = session.machine
        with call("machine->GetStorageControllerByName(Bstr(pszCtl).raw(), storageCtl.asOutParam())", 188,
                  _FILE):
            ctl = m.get_storage_controller_by_name(storagectl)
            ports, devices = int(ctl.port_count), int(ctl.max_devices_per_port_count)
            bus = int(ctl.bus)
        if port is None and device is None:
            if ports != 1 or devices != 1:
                raise SyntaxFailure("Port and device number must be specified", cmd)
            p, d = 0, 0
        else:
            p = uint("--port", port, cmd) if port is not None else 0
            d = uint("--device", device, cmd) if device is not None else 0
        if bus == int(e.StorageBus.SATA) and p >= ports:
            with call("storageCtl->COMSETTER(PortCount)(port + 1)", 230, _FILE):
                ctl.port_count = p + 1
        existing = _attachment(m, storagectl, p, d)
        if medium is not None:
            _attach(vbox, m, e, storagectl, p, d, kind, medium, medium_type, existing, forceunmount,
                    setuuid, setparentuuid)
        for key, value in flags.items():
            setter = {"nonrotational": "non_rotational_device", "discard": "set_auto_discard_for_device",
                      "hotpluggable": "set_hot_pluggable_for_device", "passthrough": "passthrough_device",
                      "tempeject": "temporary_eject_device"}[key]
            with call(f"machine->{setter}(Bstr(pszCtl).raw(), port, device, {key})", 900, _FILE):
                getattr(m, setter)(storagectl, p, d, value)
        with call("machine->SaveSettings()", 1000, _FILE):
            m.save_settings()
    return 0


def _attachment(m, ctl: str, port: int, device: int):
    try:
        return m.get_medium_attachment(ctl, port, device)
    except Exception:
        return None


def _attach(vbox, m, e, ctl, port, device, kind, medium_arg, medium_type, existing, force, setuuid,
            setparent):
    cmd = "storageattach"
    word = medium_arg.lower()
    if word == "none":
        with call("machine->DetachDevice(Bstr(pszCtl).raw(), port, device)", 420, _FILE):
            m.detach_device(ctl, port, device)
        return
    if word == "additions":
        # VBoxManageStorageController.cpp: the ISO named by ISystemProperties::defaultAdditionsISO
        iso = vbox.system_properties.default_additions_iso
        if not iso:
            raise CommandFailed(msg_lines("error: ", "Cannot find the Guest Additions ISO image"))
        medium_arg = word = iso
        kind = 2 if kind is None else kind
    if kind is None:
        kind = int(existing.type) if existing is not None else None
    if kind is None:
        raise SyntaxFailure("Argument --type must be specified", cmd)
    dev = e.DeviceType(kind)
    if word == "emptydrive":
        if kind == 3:
            raise SyntaxFailure("Hard disks can not be empty", cmd)
        with call("machine->AttachDeviceWithoutMedium(Bstr(pszCtl).raw(), port, device, devTypeRequested)",
                  520, _FILE):
            if existing is not None:
                m.unmount_medium(ctl, port, device, force)
            else:
                m.attach_device_without_medium(ctl, port, device, dev)
        return
    if word.startswith("host:"):
        raise SyntaxFailure(f"Invalid medium '{medium_arg}' (host drives are not available)", cmd)
    location = medium_arg if _UUID.match(medium_arg) else os.path.abspath(medium_arg)
    access = e.AccessMode.ReadWrite if kind == 3 else e.AccessMode.ReadOnly
    medium = find_registered(vbox, location.strip("{}").lower(), kind) if location is medium_arg else None
    if medium is None:
        with call("a->virtualBox->OpenMedium(Bstr(pszMedium).raw(), devTypeRequested, AccessMode_ReadWrite, "
                  "fForceNewUuidOnOpen, pMedium2Mount.asOutParam())", 600, _FILE):
            medium = vbox.open_medium(location, dev, access, False)
    if medium_type is not None:
        with call("pMedium2Mount->COMSETTER(Type)(enmMediumType)", 640, _FILE):
            medium.type = e.MediumType(medium_type)
    if setuuid or setparent:
        with call("pMedium2Mount->SetIds(fSetNewUuid, bstrNewUuid.raw(), fSetNewParentUuid, "
                  "bstrNewParentUuid.raw())", 660, _FILE):
            medium.set_ids(bool(setuuid), setuuid or "", bool(setparent), setparent or "")
    if existing is not None and kind in (1, 2) and int(existing.type) == kind:
        with call("machine->MountMedium(Bstr(pszCtl).raw(), port, device, pMedium2Mount, fForceUnmount)",
                  700, _FILE):
            m.mount_medium(ctl, port, device, medium, force)
        return
    with call("machine->AttachDevice(Bstr(pszCtl).raw(), port, device, devTypeRequested, pMedium2Mount)",
              720, _FILE):
        if existing is not None:
            m.detach_device(ctl, port, device)
        m.attach_device(ctl, port, device, dev, medium)
