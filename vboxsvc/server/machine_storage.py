"""IMachine's storage methods: controllers, attaching, detaching and mounting media."""

from __future__ import annotations

import logging

from settings.models import AttachedDevice
from settings.models import StorageController as ControllerModel

from ..api import errors as rc
from ..api.enums import DeviceType, MachineState, MediumState, StorageBus
from ..api.errors import VBoxError
from .fields import assign
from .machine_parts import MediumAttachment, StorageController
from .statedeps import MUTABLE, MUTABLE_OR_RUNNING
from .sysprops import bus_limits

log = logging.getLogger("vboxsvc.machine")
_DEVICE_NAMES = {DeviceType.HardDisk: "HardDisk", DeviceType.DVD: "DVD", DeviceType.Floppy: "Floppy"}


class StorageMixin:
    """Mixed into MachineView (needs _d, _core, _check_mutable, _part)."""

    # --- controllers ------------------------------------------------------------------------
    @property
    def storage_controllers(self) -> list:
        return [self._part(StorageController, c.name) for c in self._d.hardware.storage_controllers]

    def _controller(self, name: str):
        c = self._d.hardware.controller(name)
        if c is None:
            raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND, f"Could not find a storage controller named '{name}'")
        return c

    def add_storage_controller(self, name: str, connection_type: StorageBus):
        self._check_mutable(MUTABLE)
        if connection_type == StorageBus.Null:
            raise VBoxError(rc.E_INVALIDARG, "Invalid connection type")
        if not name:
            raise VBoxError(rc.E_INVALIDARG, "Storage controller name must not be empty")
        if self._d.hardware.controller(name) is not None:
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE, f"Storage controller named '{name}' already exists")
        same_bus = [c for c in self._d.hardware.storage_controllers if c.bus == connection_type.name]
        max_inst = bus_limits(connection_type)[3]
        if len(same_bus) >= max_inst:
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                            f"Too many storage controllers of this type (maximum is {max_inst})")
        instance = next(i for i in range(max_inst + 1) if all(c.instance != i for c in same_bus))
        try:
            model = ControllerModel(name=name, bus=connection_type.name, instance=instance,
                                    bootable=not any(c.bootable for c in same_bus))
        except ValueError as e:
            raise VBoxError(rc.E_INVALIDARG, str(e)) from None
        self._d.hardware.storage_controllers.append(model)
        return self._part(StorageController, name)

    def get_storage_controller_by_name(self, name: str):
        self._controller(name)
        return self._part(StorageController, name)

    def get_storage_controller_by_instance(self, connection_type: StorageBus, instance: int):
        for c in self._d.hardware.storage_controllers:
            if c.bus == connection_type.name and c.instance == instance:
                return self._part(StorageController, c.name)
        raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND,
                        f"Could not find a storage controller with instance number '{instance}'")

    def remove_storage_controller(self, name: str) -> None:
        self._check_mutable(MUTABLE)
        c = self._controller(name)
        self._d.hardware.storage_controllers.remove(c)
        self._forget_part(StorageController, name)

    def set_storage_controller_bootable(self, name: str, bootable: bool) -> None:
        self._check_mutable(MUTABLE)
        c = self._controller(name)
        if bootable:
            for other in self._d.hardware.storage_controllers:
                if other is not c and other.controller_type == c.controller_type and other.bootable:
                    raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                                    f"Another storage controller is marked as bootable ('{other.name}')")
        assign(c, "bootable", bootable)

    # --- attachments ------------------------------------------------------------------------
    def _slot(self, name: str, port: int, device: int):
        c = self._controller(name)
        _lo, _hi, per_port, _ = bus_limits(StorageBus[c.bus])
        if not 0 <= port < c.port_count:
            raise VBoxError(rc.E_INVALIDARG,
                            f"Invalid port number {port} (must be in range [0, {c.port_count - 1}])")
        if not 0 <= device < per_port:
            raise VBoxError(rc.E_INVALIDARG,
                            f"Invalid device number {device} (must be in range [0, {per_port - 1}])")
        dev = next((d for d in c.devices if d.port == port and d.device == device), None)
        return c, dev

    @property
    def medium_attachments(self) -> list:
        return [self._part(MediumAttachment, c.name, d.port, d.device)
                for c in self._d.hardware.storage_controllers for d in c.devices]

    def get_medium_attachments_of_controller(self, name: str) -> list:
        c = self._controller(name)
        return [self._part(MediumAttachment, c.name, d.port, d.device) for d in c.devices]

    def get_medium_attachment(self, name: str, controller_port: int, device: int):
        _c, dev = self._slot(name, controller_port, device)
        if dev is None:
            raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND,
                            f"No storage device attached to device slot {device} on "
                                                        f"port {controller_port} of controller '{name}'")
        return self._part(MediumAttachment, name, controller_port, device)

    def get_medium(self, name: str, controller_port: int, device: int):
        att = self.get_medium_attachment(name, controller_port, device)
        return att.medium

    def _check_medium(self, medium, type: DeviceType):
        if medium is None:
            return None
        from .media import Medium
        if not isinstance(medium, Medium):
            raise VBoxError(rc.E_INVALIDARG, "Invalid medium object")
        if medium.device_type != type:
            raise VBoxError(rc.E_INVALIDARG, f"The medium '{medium.location}' is a {medium.device_type.name} "
                                             f"medium and cannot be attached as {type.name}")
        if medium.state in (MediumState.NotCreated, MediumState.Creating, MediumState.Deleting):
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                            f"Medium '{medium.location}' is not accessible (state: {medium.state.name})")
        for c in self._d.hardware.storage_controllers:
            for d in c.devices:
                if d.medium is not None and str(d.medium) == medium.id and type == DeviceType.HardDisk:
                    raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                                    f"Medium '{medium.location}' is already attached to port "
                                    f"{d.port}, device "
                                    f"{d.device} of controller '{c.name}' of this virtual machine")
        return medium

    def attach_device(self, name: str, controller_port: int, device: int, type: DeviceType, medium) -> None:
        self._check_mutable(MUTABLE)
        if type not in _DEVICE_NAMES:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid device type {int(type)}")
        c, dev = self._slot(name, controller_port, device)
        if dev is not None:
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                            f"Port {controller_port}, device {device} of controller '{name}' of this virtual "
                            "machine already has a device attached")
        if (c.bus == "Floppy") != (type == DeviceType.Floppy):
            raise VBoxError(rc.E_INVALIDARG, f"The {type.name} device type is not supported by the "
                                             f"controller '{name}'")
        if medium is None and type == DeviceType.HardDisk:
            raise VBoxError(rc.E_INVALIDARG, "A hard disk attachment needs a medium")
        medium = self._check_medium(medium, type)
        c.devices.append(AttachedDevice(type=_DEVICE_NAMES[type], port=controller_port, device=device,
                                        medium=medium.id if medium else None))

    def attach_device_without_medium(
        self, name: str, controller_port: int, device: int, type: DeviceType
    ) -> None:
        if type == DeviceType.HardDisk:
            raise VBoxError(rc.E_INVALIDARG, "A hard disk attachment needs a medium")
        self.attach_device(name, controller_port, device, type, None)

    def detach_device(self, name: str, controller_port: int, device: int) -> None:
        self._check_mutable(MUTABLE)
        c, dev = self._slot(name, controller_port, device)
        if dev is None:
            raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND,
                            f"No storage device attached to device slot {device} on "
                                                        f"port {controller_port} of controller '{name}'")
        c.devices.remove(dev)
        self._forget_part(MediumAttachment, name, controller_port, device)

    def mount_medium(self, name: str, controller_port: int, device: int, medium, force: bool = False) -> None:
        self._check_mutable(MUTABLE_OR_RUNNING)
        _c, dev = self._slot(name, controller_port, device)
        if dev is None:
            raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND,
                            f"No storage device attached to device slot {device} on "
                                                        f"port {controller_port} of controller '{name}'")
        if dev.type == "HardDisk":
            raise VBoxError(rc.E_INVALIDARG, "Only DVD and floppy drives can have media mounted")
        medium = self._check_medium(medium, DeviceType[dev.type])
        assign(dev, "medium", medium.id if medium else None)
        self._tell_console_medium_changed(name, controller_port, device, medium)

    def _tell_console_medium_changed(self, name: str, port: int, device: int, medium) -> None:
        """A running VM's drive gets the new disc at once (Console::onMediumChange in VirtualBox)."""
        from ..ipc.dispatcher import CALL
        from .context import ctx
        core = self._core
        direct = core.direct
        console = direct.console if direct is not None else None
        if console is None or ctx.bus is None or core.state not in (MachineState.Running,
                                                                    MachineState.Paused):
            return
        location = medium.location if medium is not None else ""
        answer = ctx.bus.call_remote(console, CALL, "on_medium_change", [name, port, device, location])

        def answered(_value, err):
            if err is not None:
                log.warning("'%s': the VM did not take the medium change on %s port %d device %d: %s",
                            core.name, name, port, device, err)
        answer.add_callback(answered)

    def unmount_medium(self, name: str, controller_port: int, device: int, force: bool = False) -> None:
        self.mount_medium(name, controller_port, device, None, force)

    def _device_flag(self, name, port, device, field, value) -> None:
        self._check_mutable(MUTABLE)
        _c, dev = self._slot(name, port, device)
        if dev is None:
            raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND,
                            f"No storage device attached to device slot {device} on "
                                                        f"port {port} of controller '{name}'")
        assign(dev, field, value)

    def non_rotational_device(
        self, name: str, controller_port: int, device: int, non_rotational: bool
    ) -> None:
        self._device_flag(name, controller_port, device, "nonrotational", non_rotational)

    def set_auto_discard_for_device(
        self, name: str, controller_port: int, device: int, discard: bool
    ) -> None:
        self._device_flag(name, controller_port, device, "discard", discard)

    def set_hot_pluggable_for_device(
        self, name: str, controller_port: int, device: int, hot_pluggable: bool
    ) -> None:
        self._device_flag(name, controller_port, device, "hotpluggable", hot_pluggable)

    def passthrough_device(self, name: str, controller_port: int, device: int, passthrough: bool) -> None:
        self._device_flag(name, controller_port, device, "passthrough", passthrough)

    def temporary_eject_device(
        self, name: str, controller_port: int, device: int, temporary_eject: bool
    ) -> None:
        self._device_flag(name, controller_port, device, "temp_eject", temporary_eject)
