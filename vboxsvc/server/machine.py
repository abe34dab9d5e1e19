"""IMachine: one virtual machine, its committed settings, its state, and its session copy.

A MachineCore is the machine as the service knows it (settings as saved, machine state,
who holds its lock). Clients see it through MachineViews: the registered view reads the
committed settings and refuses changes; the session view (ISession.machine of a Write or
VM lock) works on a private copy that save_settings commits and unlock throws away; a
machine fresh from create_machine is changed directly until it is registered; a snapshot's
view (SnapshotMachineView) reads the settings the snapshot froze.

The direction of the IMachine wing: the code that works on a machine (session.py locks,
vmproc.py launches, snapshots.py / snapshot_delete.py, clone.py, guestprops.py,
sharedfolders.py) takes a MachineCore or a view and never imports this module; the views here
are the façade on top that delegates to it, and a core makes the views it hands out
(`session_view`, `snapshot_view`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid as uuidlib
from datetime import UTC, datetime
from pathlib import Path

import vmm.storage as st  # the only part of the VMM the service uses: image formats
from settings import crashpoint
from settings import paths as spaths
from settings.errors import SettingsError
from settings.machine_file import MachineFile
from settings.models import Hardware, MachineSettings, NetworkAdapter

from ..api import errors as rc
from ..api.enums import (
    CleanupMode,
    ClipboardMode,
    DeviceType,
    DnDMode,
    KeyboardHIDType,
    LockType,
    MachineState,
    ParavirtProvider,
    PointingHIDType,
    SessionState,
    USBControllerType,
    VBoxEventType,
    VMExecutionEngine,
    VMProcPriority,
    state_name,
)
from ..api.errors import VBoxError
from ..ipc import vmlock
from . import clone, guestos, guestprops, journal, sharedfolders, snapshot_delete, snapshots, vmproc
from . import session as sessions
from .context import ctx
from .fields import assign, enum_names, field, in_range
from .machine_parts import FirmwareSettings, GraphicsAdapter, Platform, SerialPort
from .machine_parts import NetworkAdapter as NicView
from .machine_storage import StorageMixin
from .progress import ErrorInfo, Progress, run_in_thread
from .statedeps import (
    MUTABLE,
    MUTABLE_OR_RUNNING,
    MUTABLE_OR_SAVED,
    MUTABLE_OR_SAVED_OR_RUNNING,
    OFFLINE,
    check_mutable,
    check_transition,
)

log = logging.getLogger("vboxsvc.machine")

LOG_READ_MAX = 32 * 1024 * 1024


def random_mac() -> str:
    return "080027" + os.urandom(3).hex().upper()


def new_machine_settings(
    uid, name: str, groups: list[str], os_type, directory_includes_uuid: bool
) -> MachineSettings:
    """A new machine as VirtualBox's Machine::init makes it (MachineImpl.cpp)."""
    adapter = os_type.adapter_type.name
    nics = [NetworkAdapter(slot=i, type=adapter, mac=random_mac(),
                           enabled=(i == 0), attachment_type="NAT" if i == 0 else "Null") for i in range(8)]
    hw = Hardware(network_adapters=nics, long_mode=os_type.is64_bit,
                  firmware=os_type.recommended_firmware.name)
    return MachineSettings(uuid=uid, name=name, groups=groups, os_type=os_type.id,
                           directory_includes_uuid=directory_includes_uuid, hardware=hw)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


# Windows guest types VirtualBox gives the Hyper-V provider by default (Vista and later, Server 2008 on)
_HYPERV_WINDOWS = frozenset({
    "windowsvista", "windowsvista_64", "windows7", "windows7_64", "windows8", "windows8_64", "windows81",
    "windows81_64", "windows10", "windows10_64", "windows11_64", "windows2008", "windows2008_64",
    "windows2012_64", "windows2016_64", "windows2019_64", "windows2022_64", "windows2025_64"})

class MachineCore:
    def __init__(self, vbox, path: Path, data: MachineSettings | None, mfile: MachineFile | None,
                 uid=None, access_error: VBoxError | None = None):
        self.vbox = vbox
        self.path = Path(path)
        self.data = data
        self.mfile = mfile
        self._uid = str(data.uuid) if data is not None else str(uid)
        self.access_error = access_error
        self.registered = False
        self.state = MachineState[data.persisted_state] if data is not None else MachineState.PoweredOff
        self.last_state_change_ms = _ms(data.last_state_change) if data is not None else 0
        self.session_state = SessionState.Unlocked
        self.direct = None          # the Session holding the Write or VM lock
        self.remotes: list = []     # Shared sessions and the launcher's Remote session
        self.launch = None          # vmproc.Launch of a VM process we started
        self.vm_client = None       # the bus client (VM process) holding the VM lock
        self.detached = None        # reattach.Detached: a VM process from before this service
        self.saving_state_file = ""
        self._saved_dump = data.model_dump() if (data is not None and mfile is not None) else None
        self.view = MachineView(self, None)

    @classmethod
    def load(cls, vbox, path: Path, uid) -> MachineCore:
        try:
            mfile = MachineFile.load(path)
        except SettingsError as e:
            log.warning("machine %s is inaccessible: %s", path, e)
            return cls(vbox, path, None, None, uid=uid,
                       access_error=VBoxError(rc.VBOX_E_FILE_ERROR if not os.path.exists(path)
                                              else rc.VBOX_E_XML_ERROR, str(e), "IMachine", "MachineWrap"))
        return cls(vbox, path, mfile.settings, mfile)

    @property
    def id(self) -> str:
        return self._uid

    @property
    def name(self) -> str:
        return self.data.name if self.data is not None else self._uid

    # --- persistence -----------------------------------------------------------------------
    def save(self, force: bool = False) -> bool:
        """Write the committed settings (with this machine's media registry) if they changed."""
        if self.data is None:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE, f"The machine '{self.path}' is inaccessible")
        self.data.media_registry = self.vbox.media.registry_model(self.id, self.path.parent)
        dump = self.data.model_dump()
        if not force and self.mfile is not None and dump == self._saved_dump and self.path.exists():
            return False
        try:
            if self.mfile is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.mfile = MachineFile.new(self.path, self.data)
            self.mfile.settings = self.data
            self.mfile.save(self.path)
        except SettingsError as e:
            raise VBoxError(rc.VBOX_E_FILE_ERROR, str(e), "IMachine", "MachineWrap") from None
        except OSError as e:
            raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Could not create the machine folder '{self.path.parent}' "
                                                  f"({e.strerror})", "IMachine", "MachineWrap") from None
        self._saved_dump = dump
        return True

    # --- state ---------------------------------------------------------------------------------
    def set_state(self, new: MachineState) -> None:
        """Enter a machine state: record the change, persist offline states, tell listeners."""
        old = self.state
        if new == old:
            return
        self.state = new
        self.last_state_change_ms = int(time.time() * 1000)
        if new in (MachineState.PoweredOff, MachineState.Aborted) and self.data is not None:
            guestprops.drop_transient(self)
        if new in OFFLINE and self.data is not None:
            self._persist_state(old)
        ctx.fire(VBoxEventType.OnMachineStateChanged, machine_id=self.id, state=new)
        if self.launch is not None:
            self.launch.on_state(new)

    def _persist_state(self, old: MachineState) -> None:
        d = self.data
        state_file = d.state_file
        if self.state in (MachineState.Saved, MachineState.AbortedSaved):
            state_file = self.saving_state_file or d.state_file
        elif self.state in (MachineState.PoweredOff, MachineState.Aborted, MachineState.Teleported):
            if old == MachineState.Restoring or old in (MachineState.Running, MachineState.Paused,
                                                       MachineState.Stopping, MachineState.Stuck):
                state_file = ""
        self.saving_state_file = ""
        changes = {"aborted": self.state in (MachineState.Aborted, MachineState.AbortedSaved),
                   "state_file": state_file,
                   "last_state_change": datetime.fromtimestamp(self.last_state_change_ms / 1000, UTC)
                   .replace(microsecond=0)}
        targets = [d] + ([self.direct.data] if self.direct is not None
                         and self.direct.data is not None else [])
        for t in targets:
            for k, v in changes.items():
                setattr(t, k, v)
        if self.registered or self.mfile is not None:
            try:
                self.save()
            except VBoxError as e:
                log.error("cannot persist the state of %s: %s", self.name, e.text)

    def drop_saved_state_file(self) -> None:
        """After a successful restore the saved state is consumed (VirtualBox deletes the .sav)."""
        f = self.data.state_file if self.data is not None else ""
        if f:
            try:
                os.unlink(f)
            except OSError:
                pass
            for t in [self.data] + ([self.direct.data] if self.direct is not None
                                    and self.direct.data else []):
                t.state_file = ""
            try:
                self.save()
            except VBoxError as e:
                log.error("cannot persist %s: %s", self.name, e.text)

    def set_session_state(self, state: SessionState) -> None:
        if state != self.session_state:
            self.session_state = state
            ctx.fire(VBoxEventType.OnSessionStateChanged, machine_id=self.id, state=state)

    def log_folder(self) -> Path:
        return spaths.log_folder(self.path)

    # --- the IMachine objects clients see ------------------------------------------------------------
    def session_view(self, session) -> MachineView:
        """The IMachine of a session holding the Write or VM lock (ISession.machine): it works on the
        session's private copy of the settings."""
        return MachineView(self, session)

    def snapshot_view(self, uid: uuidlib.UUID) -> SnapshotMachineView:
        """The read-only IMachine of snapshot `uid` (ISnapshot.machine)."""
        return SnapshotMachineView(self, uid)


def _pick(result, index: int):
    """One field of a [value, timestamp, flags] answer, also when it is still on its way (a Deferred)."""
    from ..ipc.dispatcher import Deferred
    if not isinstance(result, Deferred):
        return result[index]
    out = Deferred()

    def done(value, err):
        if err is not None:
            out.fail(err)
        else:
            out.resolve(value[index])
    result.add_callback(done)
    return out


def _os_type_check(value: str) -> None:
    guestos.get(value)


class MachineView(StorageMixin):
    """An IMachine as one client sees it: the registered machine, or a session's mutable copy."""

    __interface__ = "IMachine"

    def __init__(self, core: MachineCore, session):
        self._core = core
        self._session = session
        self._mv = self
        self._parts: dict = {}
        self._dead = False
        self.__bus_tag__ = ("machine-view", id(self)) if session is not None else None
        self.__component__ = "SessionMachine" if session is not None else "MachineWrap"

    # --- internals ---------------------------------------------------------------------------
    @property
    def _d(self) -> MachineSettings:
        if self._dead:
            raise VBoxError(rc.E_ACCESSDENIED, "The object is not ready (the session was unlocked)")
        if self._session is not None:
            return self._session.data
        if self._core.data is None:
            raise VBoxError(
                rc.E_ACCESSDENIED,
                f"The machine '{self._core.path}' is inaccessible: "
                f"{self._core.access_error.text if self._core.access_error else ''}",
            )
        return self._core.data

    def _check_mutable(self, dep: str) -> None:
        self._d  # noqa: B018 - raises when dead or inaccessible
        check_mutable(self._core.registered, self._session is not None, self._core.state, dep)

    def _part(self, cls, *key):
        k = (cls.__name__,) + key
        obj = self._parts.get(k)
        if obj is None:
            obj = cls(self, *key)
            self._parts[k] = obj
        return obj

    def _forget_part(self, cls, *key) -> None:
        k = (cls.__name__,) + key
        obj = self._parts.pop(k, None)
        if obj is not None and ctx.bus is not None:
            ctx.bus.table.drop(obj)

    def _rename_part(self, old: str, new: str) -> None:
        from .machine_parts import StorageController
        obj = self._parts.pop(("StorageController", old), None)
        if obj is not None:
            self._parts[("StorageController", new)] = obj
        _ = StorageController

    def kill(self) -> None:
        """The session ended: this view answers no more (its sub-objects leave the bus)."""
        self._dead = True
        if ctx.bus is not None:
            ctx.bus.table.drop_tag(self.__bus_tag__)
            ctx.bus.table.drop(self)

    # --- plain attributes --------------------------------------------------------------------
    @property
    def parent(self):
        return self._core.vbox

    @property
    def accessible(self) -> bool:
        return self._core.data is not None

    @property
    def access_error(self):
        return ErrorInfo(self._core.access_error) if self._core.access_error else None

    @property
    def id(self) -> str:
        return self._core.id

    @property
    def name(self) -> str:
        if self._core.data is None and self._session is None:
            return self._core.id
        return self._d.name

    @name.setter
    def name(self, value: str) -> None:
        self._check_mutable(MUTABLE_OR_SAVED)
        if not value.strip():
            raise VBoxError(rc.E_INVALIDARG, "Machine name is invalid, must not be empty")
        assign(self._d, "name", value)

    description = field("description", MUTABLE_OR_SAVED_OR_RUNNING)
    groups = field("groups", MUTABLE_OR_SAVED_OR_RUNNING)

    @property
    def os_type_id(self) -> str:
        return self._d.os_type

    @os_type_id.setter
    def os_type_id(self, value: str) -> None:
        self._check_mutable(MUTABLE_OR_SAVED)
        assign(self._d, "os_type", guestos.get(value).id)

    hardware_version = field("hardware.version", MUTABLE)

    @property
    def hardware_uuid(self) -> str:
        return str(self._d.hardware.hardware_uuid or self._d.uuid)

    @hardware_uuid.setter
    def hardware_uuid(self, value: str) -> None:
        self._check_mutable(MUTABLE)
        try:
            u = uuidlib.UUID(value.strip("{}"))
        except ValueError:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid UUID: '{value}'") from None
        assign(self._d.hardware, "hardware_uuid", None if u == self._d.uuid else u)

    cpu_count = field("hardware.cpu_count", MUTABLE, check=in_range("virtual CPU count", 1, 64))
    cpu_hot_plug_enabled = field("hardware.cpu_hotplug", MUTABLE)
    cpu_execution_cap = field("hardware.cpu_execution_cap", MUTABLE_OR_RUNNING,
                              check=in_range("CPU execution cap value", 1, 100))
    cpu_profile = field("hardware.cpu_profile", MUTABLE)
    memory_size = field("hardware.memory_mb", MUTABLE, check=in_range("RAM size", 4, 2097152, "MB"))
    page_fusion_enabled = field("hardware.page_fusion", MUTABLE)
    pointing_hid_type = field("hardware.pointing_hid", MUTABLE, *enum_names(PointingHIDType))
    keyboard_hid_type = field("hardware.keyboard_hid", MUTABLE, *enum_names(KeyboardHIDType))
    paravirt_provider = field("hardware.paravirt_provider", MUTABLE, *enum_names(ParavirtProvider))
    current_state_modified = property(lambda self: self._d.current_state_modified)

    # values the settings model does not store: what VirtualBox has by default
    cpuid_portability_level = 0
    memory_balloon_size = 0
    paravirt_debug = ""
    default_frontend = ""
    vm_process_priority = VMProcPriority.Default
    vm_execution_engine = VMExecutionEngine.Default
    autostart_enabled = False
    autostart_delay = 0
    settings_aux_file_path = ""

    @property
    def graphics_adapter(self):
        return self._part(GraphicsAdapter)

    @property
    def platform(self):
        return self._part(Platform)

    @property
    def firmware_settings(self):
        return self._part(FirmwareSettings)

    @property
    def snapshot_folder(self) -> str:
        return str(spaths.snapshot_folder(self._core.path, self._d.snapshot_folder))

    @snapshot_folder.setter
    def snapshot_folder(self, value: str) -> None:
        self._check_mutable(MUTABLE)
        if self._d.snapshot is not None:
            raise VBoxError(rc.VBOX_E_INVALID_VM_STATE,
                            "The snapshot folder of a machine with snapshots cannot be "
                                                        "changed (please delete all snapshots first)")
        folder = value or "Snapshots"
        if os.path.isabs(folder):
            folder = spaths.relative_location(self._core.path.parent, folder)
        assign(self._d, "snapshot_folder", folder)

    @property
    def settings_file_path(self) -> str:
        return str(self._core.path)

    @property
    def settings_modified(self) -> bool:
        if self._session is not None:
            return self._d.model_dump(exclude={"media_registry"}) != \
                self._core.data.model_dump(exclude={"media_registry"})
        return self._core.mfile is None or not self._core.path.exists()

    @property
    def session_state(self):
        return self._core.session_state

    @property
    def session_name(self) -> str:
        d = self._core.direct
        return d.name if d is not None else ""

    @property
    def session_pid(self) -> int:
        vm = self._core.vm_client
        if vm is not None:
            return vm.pid
        launch = self._core.launch
        return launch.pid if launch is not None else 0

    @property
    def state(self):
        return self._core.state

    @property
    def last_state_change(self) -> int:
        return self._core.last_state_change_ms

    @property
    def state_file_path(self) -> str:
        return self._core.saving_state_file or (self._core.data.state_file if self._core.data else "")

    @property
    def log_folder(self) -> str:
        return str(self._core.log_folder())

    @property
    def snapshot_count(self) -> int:
        return len(self._d.snapshots())

    # --- boot order, NICs, serial ports ------------------------------------------------------
    def set_boot_order(self, position: int, device: DeviceType) -> None:
        self._check_mutable(MUTABLE)
        if not 1 <= position <= 4:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid boot position: {position} (must be in range [1, 4])")
        if device not in (DeviceType.Null, DeviceType.Floppy, DeviceType.DVD, DeviceType.HardDisk,
                          DeviceType.Network):
            raise VBoxError(rc.E_NOTIMPL, f"Booting from {device.name} is currently not supported")
        order = list(self._d.hardware.boot_order)
        order[position - 1] = device.name
        assign(self._d.hardware, "boot_order", order)

    def get_boot_order(self, position: int):
        if not 1 <= position <= 4:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid boot position: {position} (must be in range [1, 4])")
        return DeviceType[self._d.hardware.boot_order[position - 1]]

    def get_network_adapter(self, slot: int):
        hw = self._d.hardware
        n = 36 if hw.chipset == "ICH9" else 8   # ISystemProperties::getMaxNetworkAdapters
        if len(hw.network_adapters) < n:  # a machine switched to ICH9 gets its extra (disabled) slots
            hw.network_adapters = hw.network_adapters + [NetworkAdapter(slot=i)
                                                         for i in range(len(hw.network_adapters), n)]
        if not 0 <= slot < n:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid slot number: {slot} (must be in range [0, {n - 1}])")
        return self._part(NicView, slot)

    def get_serial_port(self, slot: int):
        n = len(self._d.hardware.uarts)
        if not 0 <= slot < n:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid slot number: {slot} (must be in range [0, {n - 1}])")
        return self._part(SerialPort, slot)

    # --- extra data ------------------------------------------------------------------------------
    def get_extra_data_keys(self) -> list[str]:
        return list(self._d.extra_data)

    def get_extra_data(self, key: str) -> str:
        return self._d.extra_data.get(key, "")

    def set_extra_data(self, key: str, value: str) -> None:
        core = self._core
        if core.registered and self._session is None:
            raise VBoxError(rc.VBOX_E_INVALID_VM_STATE, "Cannot set extradata for an immutable machine")
        if not key:
            raise VBoxError(rc.E_INVALIDARG, "Extra data key must not be empty")
        targets = [self._d]
        if core.registered and core.data is not self._d:
            targets.append(core.data)  # extra data is saved at once, beside pending changes
        for t in targets:
            if value:
                t.extra_data[key] = value
            else:
                t.extra_data.pop(key, None)
        if core.registered:
            core.save()
        ctx.fire(VBoxEventType.OnExtraDataChanged, machine_id=core.id, key=key, value=value)

    # --- guest properties (guestprops.py) ------------------------------------------------------------
    def get_guest_property(self, name: str):
        return guestprops.get(self, name)

    def get_guest_property_value(self, property: str):
        return _pick(self.get_guest_property(property), 0)

    def get_guest_property_timestamp(self, property: str):
        return _pick(self.get_guest_property(property), 1)

    def set_guest_property(self, property: str, value: str, flags: str):
        return guestprops.set_(self, property, value, flags)

    def set_guest_property_value(self, property: str, value: str):
        return guestprops.set_(self, property, value, None)

    def delete_guest_property(self, name: str):
        return guestprops.set_(self, name, "", None, delete=True)

    def enumerate_guest_properties(self, patterns: str):
        return guestprops.enumerate_(self, patterns)

    def push_guest_property(self, name: str, value: str, timestamp: int, flags: str) -> None:
        guestprops.push(self, name, value, timestamp, flags)

    # --- USB, audio, clipboard, drag and drop, VRDE (machine_devices.py) ------------------------------
    clipboard_mode = field("hardware.clipboard_mode", MUTABLE_OR_SAVED_OR_RUNNING, *enum_names(ClipboardMode))
    clipboard_file_transfers_enabled = field("hardware.clipboard_file_transfers", MUTABLE_OR_SAVED_OR_RUNNING)
    dn_d_mode = field("hardware.dnd_mode", MUTABLE_OR_SAVED_OR_RUNNING, *enum_names(DnDMode))

    @property
    def usb_controllers(self):
        from .machine_devices import usb_controllers
        return usb_controllers(self)

    def add_usb_controller(self, name: str, type):
        from .machine_devices import add_usb_controller
        return add_usb_controller(self, name, type)

    def remove_usb_controller(self, name: str) -> None:
        from .machine_devices import remove_usb_controller
        remove_usb_controller(self, name)

    def get_usb_controller_count_by_type(self, type) -> int:
        return sum(1 for k in self._d.hardware.usb_controllers if k == USBControllerType(type).name)

    @property
    def audio_settings(self):
        from .machine_devices import AudioSettings
        return self._part(AudioSettings)

    @property
    def vrde_server(self):
        from .machine_devices import VRDEServer
        return self._part(VRDEServer)

    # --- shared folders (sharedfolders.py) --------------------------------------------------------------
    @property
    def shared_folders(self):
        return sharedfolders.listed(self)

    def create_shared_folder(self, name: str, host_path: str, writable: bool, automount: bool,
                             auto_mount_point: str = "") -> None:
        sharedfolders.create(self, name, host_path, writable, automount, auto_mount_point)

    def remove_shared_folder(self, name: str) -> None:
        sharedfolders.remove(self, name)

    # --- settings lifecycle ----------------------------------------------------------------------
    def save_settings(self) -> None:
        core = self._core
        self._check_mutable(MUTABLE_OR_SAVED_OR_RUNNING)
        if core.registered and self._session is None:
            raise VBoxError(rc.VBOX_E_INVALID_VM_STATE, f"The machine is not mutable (state is "
                                                        f"{core.state.name})", "IMachine", "MachineWrap")
        new = self._d
        old_name = core.data.name if core.data is not None and self._session is not None else None
        if self._session is not None:
            committed = new.model_copy(deep=True)
        else:
            committed = new
        previous, core.data = core.data, committed
        try:
            if old_name is not None and old_name != committed.name and core.mfile is not None:
                self._rename_files(old_name, committed.name)
            moved = core.vbox.media.adopt_attached(core)
            changed = core.save()
            if moved:
                core.vbox.save_main()
        except VBoxError:
            core.data = previous
            raise
        if changed and previous is not None and previous.snapshot is not None:
            snapshots.mark_modified(core)     # VirtualBox's currentStateModified
        ctx.fire(VBoxEventType.OnMachineDataChanged, machine_id=core.id, temporary=False)

    def _rename_files(self, old_name: str, new_name: str) -> None:
        """VirtualBox renames the machine folder and file on save when they carry the machine's name."""
        core = self._core
        if not core.data.name_sync:
            return
        old_path = core.path
        folder = old_path.parent
        new_folder = folder
        if folder.name == spaths.sanitise_name(old_name):
            new_folder = folder.parent / spaths.sanitise_name(new_name)
        new_file = new_folder / (spaths.sanitise_name(new_name) + old_path.suffix)
        if new_file == old_path:
            return
        if new_folder != folder and new_folder.exists():
            raise VBoxError(rc.VBOX_E_FILE_ERROR,
                            f"Could not rename the directory '{folder}' to '{new_folder}' to "
                                                  "save the settings file (VERR_ALREADY_EXISTS)")
        record = None
        if core.registered:     # VirtualBox.xml names the file: a crash between the steps is replayed
            record = journal.begin(core.vbox.home, f"rename-{core.id}", {
                "op": "rename", "uuid": core.id, "old_file": str(old_path), "new_file": str(new_file),
                "old_folder": str(folder), "new_folder": str(new_folder)})
        try:
            if new_folder != folder:
                crashpoint.hit("rename.folder")
                os.rename(folder, new_folder)
            moved_old = new_folder / old_path.name
            if moved_old != new_file and moved_old.exists():
                crashpoint.hit("rename.file")
                os.rename(moved_old, new_file)
                for suffix in ("-prev", "-tmp"):
                    try:
                        os.unlink(str(moved_old) + suffix)
                    except FileNotFoundError:
                        pass
        except OSError as e:
            raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Could not rename the settings file '{old_path}' to "
                                                  f"'{new_file}' ({e.strerror})") from None
        core.path = new_file
        if core.mfile is not None:
            core.mfile.path = new_file
        core.vbox.media.relocate_folder(folder, new_folder)
        entries = core.vbox.main.settings.machine_registry
        for e in entries:
            if str(e.uuid) == core.id:
                e.src = str(new_file)
        if core.registered:
            core.vbox.save_main()
        if record is not None:
            journal.end(record)

    def discard_settings(self) -> None:
        if self._session is None:
            if self._core.registered:
                raise VBoxError(rc.VBOX_E_INVALID_VM_STATE, "The machine is not mutable (state is "
                                                            f"{self._core.state.name})")
            return
        self._check_mutable(MUTABLE_OR_SAVED_OR_RUNNING)
        self._session.data = self._core.data.model_copy(deep=True)

    def apply_defaults(self, flags: str = "") -> None:
        self._check_mutable(MUTABLE)
        from .defaults import apply_defaults
        apply_defaults(self, guestos.get(self._d.os_type), flags)

    # --- sessions and the VM process ---------------------------------------------------------------
    def lock_machine(self, session, lock_type: LockType) -> None:
        return sessions.lock_machine(self._core, session, lock_type)

    def launch_vm_process(self, session, name: str = "", environment_changes=()):
        return vmproc.launch_vm_process(self._core, session, name, list(environment_changes))

    def update_state(self, state: MachineState) -> None:
        core = self._core
        s = self._session
        if (
            s is None
            or not isinstance(s, sessions.Session)
            or s.lock_type != LockType.VM
            or core.direct is not s
        ):
            raise VBoxError(rc.E_ACCESSDENIED,
                            "Only the VM process holding the VM lock may report machine states")
        check_transition(core.state, state)
        if state == MachineState.Saving:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S-%f") + "000Z"
            folder = spaths.snapshot_folder(core.path, self._d.snapshot_folder)
            os.makedirs(folder, exist_ok=True)
            core.saving_state_file = str(Path(folder) / f"{stamp}.sav")
        old = core.state
        core.set_state(state)
        if old == MachineState.Restoring and state in (MachineState.Running, MachineState.Paused):
            core.drop_saved_state_file()
        if old in (MachineState.Starting, MachineState.Restoring) and state == MachineState.Running:
            snapshots.mark_modified(core)     # a started VM changes the current state

    def discard_saved_state(self, remove_file: bool = True) -> None:
        core = self._core
        if self._session is None and core.registered:
            raise VBoxError(rc.VBOX_E_INVALID_VM_STATE, "The machine is not mutable (state is "
                                                        f"{core.state.name})")
        if core.state not in (MachineState.Saved, MachineState.AbortedSaved):
            raise VBoxError(rc.VBOX_E_INVALID_VM_STATE,
                            "Cannot discard the saved state as the machine is not in "
                                                        "the Saved or Aborted-Saved state (machine state: "
                                                        f"{state_name(core.state)})")
        f = core.data.state_file
        core.set_state(MachineState.Aborted if core.state == MachineState.AbortedSaved
                       else MachineState.PoweredOff)
        for t in [core.data] + ([self._session.data] if self._session is not None else []):
            t.state_file = ""
        core.save()
        if remove_file and f:
            try:
                os.unlink(f)
            except OSError:
                pass

    # --- snapshots and clones (vboxsvc/server/snapshots.py, clone.py) ---------------------------------
    @property
    def current_snapshot(self):
        return snapshots.current_snapshot(self)

    def find_snapshot(self, name_or_id: str):
        return snapshots.find_snapshot(self, name_or_id)

    def take_snapshot(self, name: str, description: str = "", pause: bool = True):
        return snapshots.take_snapshot(self, name, description, pause)

    def restore_snapshot(self, snapshot):
        return snapshots.restore_snapshot(self, snapshot)

    def delete_snapshot(self, id: str):
        return snapshot_delete.delete_snapshot(self, id)

    def clone_to(self, target, mode, options=()):
        if not isinstance(target, MachineView) or target._session is not None:
            raise VBoxError(rc.E_INVALIDARG, "Invalid target machine object", "IMachine", "MachineWrap")
        return clone.clone_to(self, target, mode, list(options))

    def export_to(self, appliance, location: str):
        from .appliance_export import export_to
        return export_to(self, appliance, location)

    # --- paravirtualization, logs ---------------------------------------------------------------
    def get_effective_paravirt_provider(self):
        p = self._d.hardware.paravirt_provider
        if p != "Default" and p != "Legacy":
            return ParavirtProvider[p]
        # Machine::getEffectiveParavirtProvider: macOS -> Minimal (also for Legacy), Windows Vista and
        # later (and their servers) -> HyperV, Linux but 2.2/2.4 -> KVM, anything else -> None
        os_id = self._d.os_type or ""
        t = guestos.lookup(os_id)
        family = t.family_id if t else "Other"
        if os_id.lower().startswith("macos"):
            return ParavirtProvider.Minimal
        if p == "Legacy":
            return ParavirtProvider["None"]
        if family == "Windows" and os_id.lower() in _HYPERV_WINDOWS:
            return ParavirtProvider.HyperV
        if family == "Linux" and os_id not in ("Linux22", "Linux24", "Linux24_64"):
            return ParavirtProvider.KVM
        return ParavirtProvider["None"]

    def query_log_filename(self, idx: int) -> str:
        if idx < 0:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid log file index {idx}")
        name = "VBox.log" if idx == 0 else f"VBox.log.{idx}"
        path = self._core.log_folder() / name
        return str(path) if path.exists() else ""

    def read_log(self, idx: int, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0:
            raise VBoxError(rc.E_INVALIDARG, "Invalid offset or size")
        path = self.query_log_filename(idx)
        if not path:
            raise VBoxError(rc.VBOX_E_IPRT_ERROR, f"Could not find the log file with index {idx} "
                                                  "(VERR_FILE_NOT_FOUND)")
        size = min(size, LOG_READ_MAX)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(size)
        except OSError as e:
            raise VBoxError(
                rc.VBOX_E_IPRT_ERROR, f"Could not open log file '{path}' ({e.strerror})"
            ) from None

    # --- unregister / delete -------------------------------------------------------------------------
    def unregister(self, cleanup_mode: CleanupMode) -> list:
        core = self._core
        if self._session is not None:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE, "Cannot unregister a session machine")
        if not core.registered:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE, f"The machine '{core.name}' is not registered")
        if core.direct is not None or core.launch is not None or core.session_state != SessionState.Unlocked:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                            f"Cannot unregister the machine '{core.name}' while it is locked")
        if MachineState.FirstOnline <= core.state <= MachineState.LastTransient:
            raise VBoxError(rc.VBOX_E_INVALID_VM_STATE,
                            f"Cannot unregister the machine '{core.name}' while it is "
                                                        f"running or in a transient state "
                            f"({state_name(core.state)})")
        if (
            core.data is not None
            and core.data.snapshot is not None
            and cleanup_mode == CleanupMode.UnregisterOnly
        ):
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                            f"Cannot unregister the machine '{core.name}' because it has "
                            f"{len(core.data.snapshots())} snapshots")
        media = []
        if core.data is not None and cleanup_mode != CleanupMode.UnregisterOnly:
            media = core.vbox.media.detach_all(core, cleanup_mode)
            if core.data.snapshot is not None:
                media = snapshot_delete.detach_snapshot_media(core, media, cleanup_mode)
        core.vbox.unregister_core(core)
        if cleanup_mode == CleanupMode.UnregisterOnly:
            core.vbox.media.forget_registry(core.id)
        return media

    def delete_config(self, media=()):
        core = self._core
        if core.registered:
            raise VBoxError(rc.VBOX_E_INVALID_VM_STATE, "Cannot delete settings of a registered machine")
        from .media import Medium
        for m in media:
            if not isinstance(m, Medium):
                raise VBoxError(rc.E_INVALIDARG, "Invalid medium object")
        media = list(media)
        progress = Progress(f"Deleting files of machine '{core.name}'", initiator=None, cancelable=False,
                            operations=[("Deleting media", 1), ("Deleting settings", 1)])
        core.vbox.media.check_deletable(media, exclude_machine=core.id)

        def work(p: Progress):
            errors = []
            for i, m in enumerate(media):
                p.set_percent(i * 100 // max(1, len(media)))
                try:
                    if os.path.exists(m.location):
                        for f in st.image_files(m.location):    # a VMDK's extent files too
                            if os.path.exists(f):
                                os.unlink(f)
                except OSError as e:
                    errors.append(f"Could not delete the medium storage unit '{m.location}' ({e.strerror})")
            p.set_operation(1)
            folder = core.path.parent
            # the VM process's lock file (ipc/vmlock.py) too: it lives beside the settings, and an
            # empty machine folder is removed below as VirtualBox removes it
            for f in [core.path, Path(str(core.path) + "-prev"), Path(str(core.path) + "-tmp"),
                      vmlock.lock_path(core.path)]:
                try:
                    f.unlink()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    errors.append(f"Could not delete '{f}' ({e.strerror})")
            if core.data is not None and core.data.state_file:
                try:
                    os.unlink(core.data.state_file)
                except OSError:
                    pass
            if core.data is not None:
                for f in snapshot_delete.snapshot_state_files(core):
                    try:
                        os.unlink(f)
                    except OSError:
                        pass
            logs = core.log_folder()
            if logs.is_dir():
                shutil.rmtree(logs, ignore_errors=True)
            snaps = spaths.snapshot_folder(core.path, core.data.snapshot_folder if core.data else None)
            for d in (snaps, folder):
                try:
                    d.rmdir()  # only if empty, as VirtualBox
                except OSError:
                    pass
            if errors:
                raise VBoxError(rc.VBOX_E_IPRT_ERROR, "; ".join(errors))

        def done(_result, _err):
            core.vbox.media.forget(media)
        return run_in_thread(progress, work, done)


class SnapshotMachineView(MachineView):
    """The read-only IMachine of a snapshot: the machine as it was when the snapshot was taken."""

    def __init__(self, core: MachineCore, uid: uuidlib.UUID):
        super().__init__(core, None)
        self.__component__ = "SnapshotMachine"
        self.snapshot_id = uid

    @property
    def _d(self) -> MachineSettings:
        s = snapshots.find_snapshot_model(self._core, self.snapshot_id, "IMachine", "SnapshotMachine")
        return self._core.data.model_copy(update={"hardware": s.hardware, "state_file": s.state_file,
                                    "snapshot": None, "current_snapshot": None})

    def _check_mutable(self, dep: str) -> None:
        raise VBoxError(rc.VBOX_E_INVALID_VM_STATE, "The machine is not mutable (state is "
                                                    f"{state_name(self._core.state)})", "IMachine",
                        "SnapshotMachine")

    @property
    def state(self):
        return MachineState.Saved if self._d.state_file else MachineState.PoweredOff

    @property
    def state_file_path(self) -> str:
        return self._d.state_file
