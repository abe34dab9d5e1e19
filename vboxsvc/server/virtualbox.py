"""IVirtualBox: the registry of machines and media, global extra data, and the factories.

State lives in VirtualBox.xml (machine registry, global extra data, system properties,
media opened but attached to no machine) and in each machine's .vbox, all read and
written through `settings`. Machines whose file cannot be read stay registered but
inaccessible, as in VirtualBox.
"""

from __future__ import annotations

import logging
import os
import uuid as uuidlib
from pathlib import Path

from settings import paths as spaths
from settings import xmlio
from settings.errors import SettingsError
from settings.machine_file import MachineFile
from settings.main_file import MainFile
from settings.models import MachineRegistryEntry, MachineSettings

from ..api import errors as rc
from ..api import identity
from ..api.enums import AccessMode, DeviceType, MachineState, PlatformArchitecture, VBoxEventType
from ..api.errors import VBoxError
from . import guestos, journal
from .context import ctx
from .host import Host
from .machine import MachineCore, new_machine_settings
from .media import MediaRegistry
from .progress import Progress
from .sysprops import SystemProperties

log = logging.getLogger("vboxsvc.vbox")

IDENTITY = identity.current()   # fixed for the life of the service
VERSION = IDENTITY.version
REVISION = IDENTITY.revision
API_VERSION = IDENTITY.api_version


def settings_error(e: SettingsError, code: int = rc.VBOX_E_XML_ERROR) -> VBoxError:
    return VBoxError(code, str(e), "IVirtualBox", "VirtualBoxWrap")


def parse_uuid(text: str) -> uuidlib.UUID | None:
    t = text.strip()
    if t.startswith("{") and t.endswith("}"):
        t = t[1:-1]
    if len(t) != 36:
        return None
    try:
        return uuidlib.UUID(t)
    except ValueError:
        return None


def parse_flags(flags: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (f.strip() for f in flags.split(","))):
        k, eq, v = item.partition("=")
        out[k.strip()] = v.strip() if eq else "1"
    return out


class VirtualBox:
    __interface__ = "IVirtualBox"
    __component__ = "VirtualBoxWrap"

    version = VERSION
    version_normalized = VERSION
    revision = REVISION
    package_type = "LINUX_64BITS_GENERIC"
    api_version = API_VERSION
    api_revision = IDENTITY.api_revision

    def __init__(self, home: Path | None = None):
        self.home = Path(home) if home else spaths.vbox_user_home(create=True)
        self.main_path = self.home / "VirtualBox.xml"
        # a VirtualBox.xml missing beside a complete -tmp/-prev comes back (load raises rather
        # than start an empty registry when the side files are there but broken)
        if self.main_path.exists() or xmlio.recover(self.main_path):
            self.main = MainFile.load(self.main_path)
        else:
            self.main = MainFile.new(self.main_path)
            self.main.save()
        self.host = Host()
        self.system_properties = SystemProperties(self)
        self.media = MediaRegistry(self)
        self.cores: list[MachineCore] = []
        self.media.load_global(self.main.settings.media_registry, self.main.folder)
        moved = self._replay_journal()
        for entry in list(self.main.settings.machine_registry):
            path = self.main.machine_path(entry)
            core = MachineCore.load(self, path, entry.uuid)
            core.registered = True
            self.cores.append(core)
            if core.data is not None:
                self.media.load_machine(core)

        for old_folder, new_folder in moved:
            self.media.relocate_folder(old_folder, new_folder)
        if moved:
            for core in self.cores:
                if core.data is not None and any(Path(core.path).is_relative_to(n) for _o, n in moved):
                    core.save(force=True)
            self.save_main()
        for path, _record in journal.pending(self.home):
            journal.end(path)

    def _replay_journal(self) -> list[tuple[Path, Path]]:
        """Finish multi-file operations a crash interrupted (see journal.py); returns the folder
        moves whose media paths still need relocating once the machines are loaded."""
        moved = []
        for _path, record in journal.pending(self.home):
            if record.get("op") != "rename":
                continue
            try:
                done = journal.rename_forward(record)
            except OSError as e:
                log.error("could not finish the interrupted rename of %s: %s", record.get("old_file"), e)
                continue
            if not done:
                continue
            for e in self.main.settings.machine_registry:
                if str(e.uuid) == record["uuid"]:
                    e.src = record["new_file"]
            moved.append((Path(record["old_folder"]), Path(record["new_folder"])))
        return moved

    # --- persistence ------------------------------------------------------------------------
    def save_main(self) -> None:
        self.main.settings.media_registry = self.media.registry_model("global", self.main.folder)
        try:
            self.main.save()
        except SettingsError as e:
            raise settings_error(e, rc.VBOX_E_FILE_ERROR) from None

    # --- attributes -------------------------------------------------------------------------
    @property
    def home_folder(self) -> str:
        return str(self.home)

    @property
    def settings_file_path(self) -> str:
        return str(self.main_path)

    @property
    def machines(self) -> list:
        return [c.view for c in self.cores]

    @property
    def machine_groups(self) -> list[str]:
        groups = []
        for c in self.cores:
            for g in (c.data.groups if c.data else ["/"]):
                if g not in groups:
                    groups.append(g)
        return groups

    @property
    def hard_disks(self) -> list:
        return self.media.bases(DeviceType.HardDisk)

    @property
    def dvd_images(self) -> list:
        return self.media.bases(DeviceType.DVD)

    @property
    def floppy_images(self) -> list:
        return self.media.bases(DeviceType.Floppy)

    @property
    def progress_operations(self) -> list:
        return [p for p in Progress.registry.values() if not p.completed]

    @property
    def guest_os_types(self) -> list:
        return list(guestos.OS_TYPES.values())

    @property
    def guest_os_families(self) -> list[str]:
        return guestos.families()

    @property
    def event_source(self):
        return ctx.events

    # --- machines ---------------------------------------------------------------------------
    def compose_machine_filename(self, name: str, group: str = "", create_flags: str = "",
                                 base_folder: str = "") -> str:
        flags = parse_flags(create_flags)
        for k in flags:
            if k not in ("UUID", "directoryIncludesUUID"):
                raise VBoxError(rc.E_INVALIDARG, f"Invalid create machine flag: '{k}'")
        uid = parse_uuid(flags["UUID"]) if "UUID" in flags else None
        if "UUID" in flags and uid is None:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid UUID '{flags['UUID']}'")
        incl = flags.get("directoryIncludesUUID") in ("1", "true", "on", "yes")
        if incl and uid is None:
            raise VBoxError(rc.E_INVALIDARG, "The directoryIncludesUUID flag needs a UUID")
        try:
            return str(spaths.compose_machine_filename(
                name, group or "/", base_folder or None, self.system_properties.default_machine_folder,
                uuid=uid, directory_includes_uuid=incl))
        except SettingsError as e:
            raise VBoxError(rc.E_INVALIDARG, e.problem) from None

    def create_machine(self, settings_file: str, name: str, platform=PlatformArchitecture.x86, groups=(),
                       os_type_id: str = "", flags: str = "", cipher: str = "", password_id: str = "",
                       password: str = ""):
        if platform not in (PlatformArchitecture.x86, PlatformArchitecture["None"]):
            raise VBoxError(rc.VBOX_E_PLATFORM_ARCH_NOT_SUPPORTED,
                            f"Platform architecture {PlatformArchitecture(platform).name} is not supported "
                            f"on this host")
        if cipher or password:
            raise VBoxError(rc.VBOX_E_NOT_SUPPORTED, "Encrypted machines are not supported by vboxpy")
        if not name.strip():
            raise VBoxError(rc.E_INVALIDARG, "Machine name is invalid, must not be empty")
        f = parse_flags(flags)
        for k in f:
            if k not in ("UUID", "directoryIncludesUUID", "forceOverwrite"):
                raise VBoxError(rc.E_INVALIDARG, f"Invalid create machine flag: '{k}'")
        uid = uuidlib.uuid4()
        if "UUID" in f:
            uid = parse_uuid(f["UUID"])
            if uid is None:
                raise VBoxError(rc.E_INVALIDARG, f"Invalid UUID '{f['UUID']}'")
        incl = f.get("directoryIncludesUUID") in ("1", "true", "on", "yes")
        groups = list(groups) or ["/"]
        if not settings_file:
            settings_file = self.compose_machine_filename(
                name, groups[0], f"UUID={uid}" + (",directoryIncludesUUID=1" if incl else ""), "")
        if not os.path.isabs(settings_file):
            raise VBoxError(rc.E_INVALIDARG, f"The given path '{settings_file}' is not fully qualified")
        if os.path.exists(settings_file) and f.get("forceOverwrite") not in ("1", "true", "on", "yes"):
            raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Machine settings file '{settings_file}' already exists")
        os_type = guestos.get(os_type_id) if os_type_id else guestos.get("Other")
        try:
            data = new_machine_settings(uid, name, groups, os_type, incl)
        except ValueError as e:
            raise VBoxError(rc.E_INVALIDARG, _first_error(e)) from None
        core = MachineCore(self, Path(settings_file), data, mfile=None)
        return core.view

    def open_machine(self, settings_file: str, password: str = ""):
        if not os.path.isabs(settings_file):
            raise VBoxError(rc.E_INVALIDARG, f"The given path '{settings_file}' is not fully qualified")
        for c in self.cores:
            if os.path.abspath(c.path) == os.path.abspath(settings_file):
                return c.view
        try:
            mfile = MachineFile.load(settings_file)
        except SettingsError as e:
            raise settings_error(e, rc.VBOX_E_FILE_ERROR if not os.path.exists(settings_file)
                                 else rc.VBOX_E_XML_ERROR) from None
        return MachineCore(self, Path(settings_file), mfile.settings, mfile=mfile).view

    def register_machine(self, machine) -> None:
        core = _core_of(machine)
        if core.registered:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                            f"The machine '{core.name}' with UUID {{{core.id}}} is already registered")
        for c in self.cores:
            if c.id == core.id:
                raise VBoxError(rc.E_INVALIDARG,
                                f"Registered machine with UUID {{{core.id}}} ('{c.name}') already exists")
            if os.path.abspath(c.path) == os.path.abspath(core.path):
                raise VBoxError(rc.E_INVALIDARG,
                                f"Registered machine with settings file '{core.path}' ('{c.name}') "
                                f"already exists")
        if core.mfile is None or not core.path.exists():
            core.save()
        core.registered = True
        self.cores.append(core)
        self.media.load_machine(core)
        self.main.settings.machine_registry.append(MachineRegistryEntry(uuid=core.data.uuid,
                                                                        src=str(core.path)))
        self.save_main()
        ctx.fire(VBoxEventType.OnMachineRegistered, machine_id=core.id, registered=True)

    def unregister_core(self, core: MachineCore) -> None:
        self.cores.remove(core)
        core.registered = False
        self.main.settings.machine_registry = [e for e in self.main.settings.machine_registry
                                               if str(e.uuid) != core.id]
        self.save_main()
        ctx.fire(VBoxEventType.OnMachineRegistered, machine_id=core.id, registered=False)

    def find_machine(self, name_or_id: str):
        core = self.find_core(name_or_id)
        if core is None:
            uid = parse_uuid(name_or_id)
            if uid is not None:
                raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND,
                                f"Could not find a registered machine with UUID {{{uid}}}")
            raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND,
                            f"Could not find a registered machine named '{name_or_id}'")
        return core.view

    def find_core(self, name_or_id: str) -> MachineCore | None:
        uid = parse_uuid(name_or_id)
        if uid is not None:
            return next((c for c in self.cores if c.id == str(uid)), None)
        c = next((c for c in self.cores if c.data is not None and c.data.name == name_or_id), None)
        if c is None and os.path.isabs(name_or_id):
            c = next((c for c in self.cores if os.path.abspath(c.path) == os.path.abspath(name_or_id)), None)
        return c

    def core_by_id(self, machine_id: str) -> MachineCore | None:
        return next((c for c in self.cores if c.id == machine_id), None)

    def get_machines_by_groups(self, groups) -> list:
        return [c.view for c in self.cores if c.data is not None and set(c.data.groups) & set(groups)]

    def get_machine_states(self, machines) -> list:
        return [int(_core_of(m).state) for m in machines]

    # --- media --------------------------------------------------------------------------------
    def create_medium(self, format: str, location: str, access_mode: AccessMode,
                      device_type_type: DeviceType):
        return self.media.create(format, location, access_mode, device_type_type)

    def open_medium(self, location: str, device_type: DeviceType,
                    access_mode: AccessMode = AccessMode.ReadWrite,
                    force_new_uuid: bool = False):
        return self.media.open(location, device_type, access_mode, force_new_uuid)

    # --- misc ---------------------------------------------------------------------------------
    def get_guest_os_type(self, id: str):
        return guestos.get(id)

    def get_extra_data_keys(self) -> list[str]:
        return list(self.main.settings.extra_data)

    def get_extra_data(self, key: str) -> str:
        return self.main.settings.extra_data.get(key, "")

    def set_extra_data(self, key: str, value: str) -> None:
        if not key:
            raise VBoxError(rc.E_INVALIDARG, "Extra data key must not be empty")
        ed = self.main.settings.extra_data
        if ed.get(key, "") == value:
            return
        old = ed.get(key)
        if value:
            ed[key] = value
        else:
            ed.pop(key, None)
        try:
            self.save_main()
        except VBoxError:
            if old is None:
                ed.pop(key, None)
            else:
                ed[key] = old
            raise
        ctx.fire(VBoxEventType.OnExtraDataChanged, machine_id="", key=key, value=value)

    def create_appliance(self):
        from .appliance import Appliance
        return Appliance(self)

    def find_progress_by_id(self, id: str):
        p = Progress.registry.get(id.strip("{}"))
        if p is None:
            raise VBoxError(rc.E_INVALIDARG, f"No progress object with the given ID {{{id}}} exists")
        return p

    # --- service --------------------------------------------------------------------------------
    def running_count(self) -> int:
        return sum(1 for c in self.cores if MachineState.FirstOnline <= c.state <= MachineState.LastOnline)


def _core_of(machine) -> MachineCore:
    core = getattr(machine, "_core", None)
    if not isinstance(core, MachineCore):
        raise VBoxError(rc.E_INVALIDARG, "Invalid machine object")
    return core


def _first_error(e: ValueError) -> str:
    errs = getattr(e, "errors", None)
    if callable(errs):
        try:
            first = errs()[0]
            msg = first.get("msg", str(e))
            return msg.removeprefix("Value error, ")
        except Exception:
            pass
    return str(e)


__all__ = ["VirtualBox", "MachineSettings"]
