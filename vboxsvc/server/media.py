"""IMedium and the media registry, over vmm.storage's image formats.

VirtualBox's registry rules: a medium created or opened but attached to no machine is kept
in VirtualBox.xml; once a machine that uses it saves its settings, the medium (with its
whole differencing tree) moves into that machine's .vbox. Closing refuses media still
attached or with children. Work on image files runs in worker threads behind IProgress.
"""

from __future__ import annotations

import logging
import os
import uuid as uuidlib
from pathlib import Path

import vmm.storage as st  # the only part of the VMM the service uses: image formats
from settings import paths as spaths
from settings.models import MediaRegistry as RegistryModel
from settings.models import Medium as MediumModel

from ..api import errors as rc
from ..api.enums import (
    AccessMode,
    CleanupMode,
    DeviceType,
    MediumState,
    MediumType,
    MediumVariant,
    VBoxEventType,
)
from ..api.errors import VBoxError
from .context import ctx
from .progress import Progress, run_in_thread

log = logging.getLogger("vboxsvc.media")

GLOBAL = "global"
_KIND = {DeviceType.HardDisk: "hard disk", DeviceType.DVD: "DVD image", DeviceType.Floppy: "floppy image"}
# formats with upper-case names (VD backends VDI, VMDK, VHD, RAW); other names, such as the ISO maker's
# "VBoxIsoMaker", keep the spelling their settings file uses
_CANONICAL_FORMATS = frozenset({"VDI", "VMDK", "VHD", "RAW"})


def _vmdk_variant(flags: int) -> str:
    """MediumVariant bits -> the VMDK layout vmm.storage creates."""
    if flags & MediumVariant.VmdkStreamOptimized:
        return "stream"
    if flags & MediumVariant.VmdkSplit2G:
        return "split2g-fixed" if flags & MediumVariant.Fixed else "split2g"
    return "fixed" if flags & MediumVariant.Fixed else "standard"


FORMATS = ("VDI", "VMDK", "RAW")


class Medium:
    __interface__ = "IMedium"
    __component__ = "MediumWrap"

    def __init__(self, reg: MediaRegistry, uid: str, location: str, fmt: str, device_type: DeviceType,
                 state: MediumState = MediumState.Created):
        self._reg = reg
        self.id = uid
        self.location = location
        self.format = fmt
        self.device_type = device_type
        self.state = state
        self.description_ = ""
        self.type_ = MediumType.Readonly if device_type == DeviceType.DVD else MediumType.Normal
        self.auto_reset_ = False
        self.properties: dict[str, str] = {}
        self.parent: Medium | None = None
        self.children: list[Medium] = []
        self.registry: str | None = None
        self.last_access_error = ""
        self._info = None

    # --- attributes ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return os.path.basename(self.location)

    @property
    def host_drive(self) -> bool:
        return False

    @property
    def base(self) -> Medium:
        m = self
        while m.parent is not None:
            m = m.parent
        return m

    @property
    def read_only(self) -> bool:
        return self.device_type == DeviceType.DVD or self.type_ in (MediumType.Immutable,
                                                                    MediumType.Readonly) \
            or bool(self.children)

    def info(self):
        if self._info is None and self.state in (MediumState.Created, MediumState.Inaccessible):
            self.refresh_state()
        return self._info

    @property
    def size(self) -> int:
        if self.format == "VMDK" and self.device_type == DeviceType.HardDisk:
            i = self.info()         # a VMDK may be several files: the image knows them all
            return i.file_size if i is not None else 0
        try:
            return os.stat(self.location).st_size
        except OSError:
            return 0

    @property
    def logical_size(self) -> int:
        i = self.info()
        return i.size if i is not None else 0

    @property
    def variant(self) -> list:
        i = self.info()
        if i is None:
            return [MediumVariant.Standard]
        out = []
        if i.variant == "fixed" and self.format in ("VDI", "VMDK"):
            out.append(MediumVariant.Fixed)
        if i.variant == "differencing":
            out.append(MediumVariant.Diff)
        sub = {"split2G": MediumVariant.VmdkSplit2G, "streamOptimized": MediumVariant.VmdkStreamOptimized,
               "ESX": MediumVariant.VmdkESX}.get(getattr(i, "subformat", "default"))
        if sub is not None:
            out.append(sub)
        return out or [MediumVariant.Standard]

    @property
    def description(self) -> str:
        return self.description_

    @description.setter
    def description(self, value: str) -> None:
        self.description_ = value
        self._reg.save_owner(self)
        ctx.fire(VBoxEventType.OnMediumConfigChanged, medium_id=self.id)

    @property
    def type(self):
        return self.type_

    @type.setter
    def type(self, value) -> None:
        if self.parent is not None:
            raise VBoxError(rc.E_FAIL, f"Cannot change the type of medium '{self.location}' because it is a "
                                       "differencing medium")
        users = self._reg.users(self)
        if users and value != self.type_:
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                            f"Cannot change the type of medium '{self.location}' because "
                                                     f"it is attached to {len(users)} virtual machines")
        self.type_ = MediumType(value)
        self._reg.save_owner(self)
        ctx.fire(VBoxEventType.OnMediumConfigChanged, medium_id=self.id)

    @property
    def allowed_types(self) -> list:
        if self.device_type == DeviceType.DVD:
            return [MediumType.Readonly]
        if self.device_type == DeviceType.Floppy:
            return [MediumType.Normal, MediumType.Immutable, MediumType.Writethrough, MediumType.Readonly]
        return [MediumType.Normal, MediumType.Immutable, MediumType.Writethrough, MediumType.Shareable,
                MediumType.MultiAttach]

    @property
    def auto_reset(self) -> bool:
        return self.auto_reset_

    @auto_reset.setter
    def auto_reset(self, value: bool) -> None:
        if self.parent is None:
            raise VBoxError(rc.VBOX_E_NOT_SUPPORTED, f"Medium '{self.location}' is not differencing")
        self.auto_reset_ = value
        self._reg.save_owner(self)

    @property
    def machine_ids(self) -> list[str]:
        return [c.id for c in self._reg.users(self)]

    # --- methods -------------------------------------------------------------------------------
    def refresh_state(self):
        if self.state in (MediumState.NotCreated, MediumState.Creating, MediumState.Deleting):
            return self.state
        if self.device_type != DeviceType.HardDisk:
            ok = os.path.isfile(self.location)
            self._info = None
            self.state = MediumState.Created if ok else MediumState.Inaccessible
            self.last_access_error = "" if ok else (f"Could not open the medium '{self.location}'.\n"
                                                    "VD: error VERR_FILE_NOT_FOUND (-102) opening image file")
            return self.state
        try:
            self._info = st.image_info(self.location)
            self.state = MediumState.Created
            self.last_access_error = ""
        except Exception as e:  # DiskImageError or OSError
            self._info = None
            self.state = MediumState.Inaccessible
            self.last_access_error = f"Could not open the medium '{self.location}'.\n{e}"
        return self.state

    def set_ids(self, set_image_id: bool, image_id: str, set_parent_id: bool, parent_id: str) -> None:
        """Give the image a new UUID (random if empty) and/or record another parent UUID in its header."""
        if not (set_image_id or set_parent_id):
            return
        if self.device_type != DeviceType.HardDisk or self.format not in ("VDI", "VMDK"):
            raise VBoxError(rc.VBOX_E_NOT_SUPPORTED,
                            f"Medium '{self.location}' does not support changing UUIDs "
                                                     "(only VDI and VMDK hard disks do)")
        self._need(MediumState.Created)
        users = self._reg.users(self)
        if users:
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE, f"Medium '{self.location}' is attached to {len(users)} "
                                                     "virtual machines; its UUIDs cannot change")
        new_id = self.id
        if set_image_id:
            if self.children:
                raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                                f"Medium '{self.location}' has child media; its UUID "
                                                         "cannot change")
            try:
                new_id = str(uuidlib.UUID(image_id.strip("{}"))) if image_id else str(uuidlib.uuid4())
            except ValueError:
                raise VBoxError(rc.E_INVALIDARG, f"Invalid UUID '{image_id}'") from None
            other = self._reg.by_id.get(new_id)
            if other is not None and other is not self:
                raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                                f"A medium with UUID {{{new_id}}} is already registered")
        new_parent = None
        if set_parent_id:
            try:
                new_parent = uuidlib.UUID(parent_id.strip("{}")) if parent_id else uuidlib.UUID(int=0)
            except ValueError:
                raise VBoxError(rc.E_INVALIDARG, f"Invalid UUID '{parent_id}'") from None
        try:
            st.set_uuids(self.location, image_uuid=new_id if set_image_id else None, parent_uuid=new_parent)
        except (OSError, st.DiskImageError) as e:
            raise VBoxError(
                rc.VBOX_E_FILE_ERROR, f"Could not update the UUIDs of '{self.location}' ({e})"
            ) from None
        if new_id != self.id:
            self._reg.by_id.pop(self.id, None)
            self.id = new_id
            self._reg.by_id[new_id] = self
        self._info = None
        self._reg.save_owner(self)
        ctx.fire(VBoxEventType.OnMediumConfigChanged, medium_id=self.id)

    def get_snapshot_ids(self, machine_id: str) -> list[str]:
        return [machine_id] if machine_id in self.machine_ids else []

    def close(self) -> None:
        users = self._reg.users(self)
        if users:
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                            f"Medium '{self.location}' cannot be closed because it is "
                                                     f"still attached to {len(users)} virtual machines")
        if self.children:
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE, f"Cannot close medium '{self.location}' because it has "
                                                     f"{len(self.children)} child media")
        if self.state in (MediumState.Creating, MediumState.Deleting, MediumState.LockedWrite):
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE, f"Medium '{self.location}' is busy")
        self._reg.unregister(self)

    def get_property(self, name: str) -> str:
        return self.properties.get(name, "")

    def set_property(self, name: str, value: str) -> None:
        if value:
            self.properties[name] = value
        else:
            self.properties.pop(name, None)
        self._reg.save_owner(self)

    def _need(self, *states) -> None:
        if self.state not in states:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                            f"Medium '{self.location}' is not in a suitable state (state: {self.state.name})")

    def create_base_storage(self, logical_size: int, variant=()):
        if self.state != MediumState.NotCreated:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                            f"Storage for the medium '{self.location}' is already created")
        if logical_size <= 0:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid logical size {logical_size}")
        flags = 0
        for v in variant:
            flags |= int(v)
        if flags & MediumVariant.Diff:
            raise VBoxError(rc.E_INVALIDARG, "A base storage unit cannot be differencing")
        fixed = bool(flags & MediumVariant.Fixed)
        if self.format == "RAW" and not fixed:
            fixed = True
        vmdk_variant = _vmdk_variant(flags)
        if self.format != "VMDK" and flags & (MediumVariant.VmdkSplit2G | MediumVariant.VmdkStreamOptimized
                                              | MediumVariant.VmdkESX | MediumVariant.VmdkRawDisk):
            raise VBoxError(rc.VBOX_E_NOT_SUPPORTED, f"Medium format '{self.format}' does not support the "
                                                     "requested storage variant")
        if os.path.exists(self.location):
            raise VBoxError(rc.VBOX_E_FILE_ERROR,
                            f"Could not create the medium storage unit '{self.location}'.\n"
                                                  "VD: error VERR_ALREADY_EXISTS (-105) creating image file")
        self.state = MediumState.Creating
        progress = Progress(f"Creating {'fixed' if fixed else 'dynamic'} medium storage unit "
                            f"'{self.location}'",
                            initiator=self, cancelable=False)

        def work(p):
            if not (flags & MediumVariant.NoCreateDir):
                os.makedirs(os.path.dirname(self.location), exist_ok=True)
            try:
                if self.format == "RAW":
                    img = st.create_raw(self.location, logical_size)
                elif self.format == "VMDK":
                    img = st.create_vmdk(self.location, logical_size, vmdk_variant, uuid=self.id)
                else:
                    img = st.create_vdi(self.location, logical_size, fixed=fixed, uuid=self.id)
                img.close()
            except (st.DiskImageError, OSError) as e:
                raise VBoxError(rc.VBOX_E_FILE_ERROR,
                                f"Could not create the medium storage unit '{self.location}'.\n{e}") from None

        return run_in_thread(progress, work, self._created(self))

    def delete_storage(self):
        users = self._reg.users(self)
        if users:
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                            f"Medium '{self.location}' cannot be deleted because it is "
                                                     f"still attached to {len(users)} virtual machines")
        if self.children:
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE, f"Cannot delete storage: medium '{self.location}' has "
                                                     f"{len(self.children)} child media")
        self._need(MediumState.Created, MediumState.Inaccessible)
        self.state = MediumState.Deleting
        progress = Progress(f"Deleting medium storage unit '{self.location}'", initiator=self)

        def work(p):
            for f in st.image_files(self.location):     # a VMDK may have extent files
                try:
                    os.unlink(f)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Could not delete the medium storage unit "
                                                          f"'{self.location}' ({e.strerror})") from None

        def done(_r, err):
            if err is not None:
                self.state = MediumState.Created
                return
            self._reg.unregister(self)
            self.state = MediumState.NotCreated
        return run_in_thread(progress, work, done)

    def _target(self, target) -> Medium:
        if not isinstance(target, Medium):
            raise VBoxError(rc.E_INVALIDARG, "Invalid target medium object")
        if target.state != MediumState.NotCreated:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                            f"Storage for the medium '{target.location}' is already created")
        if os.path.exists(target.location):
            raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Could not create the medium storage unit "
                                                  f"'{target.location}'.\nVD: error "
                            f"VERR_ALREADY_EXISTS (-105)")
        return target

    def create_diff_storage(self, target, variant=()):
        if self.device_type != DeviceType.HardDisk or self.format not in ("VDI", "VMDK"):
            raise VBoxError(rc.VBOX_E_NOT_SUPPORTED,
                            "Differencing images need a VDI or VMDK hard disk as parent")
        self._need(MediumState.Created)
        target = self._target(target)
        if target.format != "VDI":
            raise VBoxError(rc.VBOX_E_NOT_SUPPORTED, "Differencing images must be VDI")
        target.state = MediumState.Creating
        progress = Progress(f"Creating differencing medium storage unit '{target.location}'", initiator=self)

        def work(p):
            os.makedirs(os.path.dirname(target.location), exist_ok=True)
            try:
                st.create_diff_vdi(target.location, self.location, uuid=target.id,
                                   parent_resolver=self._reg.resolver()).close()
            except (st.DiskImageError, OSError) as e:
                raise VBoxError(rc.VBOX_E_FILE_ERROR,
                                f"Could not create the differencing medium storage unit "
                                                      f"'{target.location}'.\n{e}") from None

        def done(_r, err):
            if err is not None:
                target.state = MediumState.NotCreated
                return
            target.state = MediumState.Created
            target.parent = self
            self.children.append(target)
            self._reg.register(target, self.base.registry or GLOBAL)
        return run_in_thread(progress, work, done)

    def clone_to(self, target, variant=(), parent=None):
        if parent is not None:
            raise VBoxError(rc.VBOX_E_NOT_SUPPORTED,
                            "Cloning into a differencing image is not supported by vboxpy")
        return self.clone_to_base(target, variant)

    def clone_to_base(self, target, variant=()):
        self._need(MediumState.Created)
        target = self._target(target)
        if target.device_type != self.device_type:
            raise VBoxError(rc.E_INVALIDARG, "The target medium has a different device type")
        flags = 0
        for v in variant:
            flags |= int(v)
        fixed = bool(flags & MediumVariant.Fixed)
        if target.format != "VMDK" and flags & (
            MediumVariant.VmdkSplit2G | MediumVariant.VmdkStreamOptimized
        ):
            raise VBoxError(rc.VBOX_E_NOT_SUPPORTED, f"Medium format '{target.format}' does not support the "
                                                     "requested storage variant")
        target.state = MediumState.Creating
        progress = Progress(f"Creating clone medium '{target.location}'", initiator=self, cancelable=True)

        def work(p):
            os.makedirs(os.path.dirname(target.location), exist_ok=True)

            def report(frac):
                if p.canceled:
                    raise VBoxError(rc.E_FAIL, "Operation was canceled")
                p.set_percent(int(frac * 100))
            try:
                st.clone_image(self.location, target.location, fmt=target.format, fixed=fixed, flatten=True,
                               progress=report, uuid=target.id if target.format in ("VDI", "VMDK") else None,
                               parent_resolver=self._reg.resolver(),
                               variant=_vmdk_variant(flags) if target.format == "VMDK" else None)
            except (st.DiskImageError, OSError) as e:
                if os.path.exists(target.location):
                    os.unlink(target.location)
                raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Could not create the clone medium "
                                                      f"'{target.location}'.\n{e}") from None

        return run_in_thread(progress, work, self._created(target))

    def _created(self, medium: Medium):
        """The bus-thread end of creating `medium`'s image: Created and in the global registry, or
        NotCreated when the work failed."""
        def done(_r, err):
            if err is not None:
                medium.state = MediumState.NotCreated
                return
            medium.state = MediumState.Created
            medium._info = None
            self._reg.register(medium, GLOBAL)
        return done

    def _in_place(self, description: str, op):
        self._need(MediumState.Created)
        running = [c for c in self._reg.users(self) if c.vm_client is not None or c.launch is not None]
        if running:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                            f"Medium '{self.location}' is locked for writing by "
                                                            f"a running machine")
        self.state = MediumState.LockedWrite
        progress = Progress(description, initiator=self)

        def work(p):
            try:
                return op(st, lambda frac: p.set_percent(int(frac * 100)))
            except (st.DiskImageError, OSError) as e:
                raise VBoxError(rc.VBOX_E_FILE_ERROR, f"{description} failed.\n{e}") from None

        def done(_r, _err):
            self.state = MediumState.Created
            self._info = None
            ctx.fire(VBoxEventType.OnMediumConfigChanged, medium_id=self.id)
        return run_in_thread(progress, work, done)

    def compact(self):
        return self._in_place(f"Compacting medium '{self.location}'",
                              lambda st, cb: st.compact(self.location, progress=cb,
                                                        parent_resolver=self._reg.resolver()))

    def resize(self, logical_size: int):
        if logical_size < self.logical_size:
            raise VBoxError(rc.VBOX_E_NOT_SUPPORTED, f"Medium '{self.location}' cannot be shrunk "
                                                     f"(from {self.logical_size} to {logical_size} bytes)")
        return self._in_place(f"Resizing medium '{self.location}'",
                              lambda st, cb: st.resize(self.location, logical_size, progress=cb,
                                                       parent_resolver=self._reg.resolver()))

    def merge_to(self, target):
        if not isinstance(target, Medium):
            raise VBoxError(rc.E_INVALIDARG, "Invalid target medium object")
        self._need(MediumState.Created)
        if target.parent is self:
            parent, child, into_parent = self, target, False
        elif self.parent is target:
            parent, child, into_parent = target, self, True
        else:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                            f"Media '{self.name}' and '{target.name}' are unrelated")
        source = child if into_parent else parent
        if self._reg.users(source):
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                            f"Medium '{source.location}' is attached to a virtual machine "
                                                     "and cannot be merged away")
        if not into_parent and len(parent.children) > 1:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                            f"Medium '{parent.location}' has more than one child")
        progress = Progress(f"Merging medium '{self.name}' to '{target.name}'", initiator=self)

        def work(p):
            def cb(frac):
                return (p.set_percent(int(frac * 100)))
            try:
                if into_parent:
                    st.merge_into_parent(child.location, parent.location,
                                         relink=[c.location for c in child.children], progress=cb,
                                         parent_resolver=self._reg.resolver())
                else:
                    st.merge_into_child(parent.location, child.location, progress=cb,
                                        parent_resolver=self._reg.resolver())
            except (st.DiskImageError, OSError) as e:
                raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Could not merge the medium '{source.location}'.\n"
                                                      f"{e}") from None

        def done(_r, err):
            if err is not None:
                return
            if into_parent:
                owner = child.registry
                self._reg.merged(child, parent, into_parent=True)
                self._reg.save_file_of(owner)
            else:
                owner = parent.base.registry if parent.parent is not None else parent.registry
                self._reg.merged(parent, child, into_parent=False)
                self._reg.save_file_of(owner)
                self._reg.save_owner(child)
            parent._info = child._info = None
        return run_in_thread(progress, work, done)


class MediaRegistry:
    """All media the service knows, with the rule of which settings file records each."""

    def __init__(self, vbox):
        self.vbox = vbox
        self.by_id: dict[str, Medium] = {}

    # --- loading --------------------------------------------------------------------------------
    def _load_tree(self, model: MediumModel, device_type: DeviceType, owner: str, folder: Path, parent=None):
        uid = str(model.uuid)
        existing = self.by_id.get(uid)
        if existing is not None:
            # a linked clone's registry repeats its parents; pick up its own children
            for c in model.children:
                if str(c.uuid) not in self.by_id:
                    existing.children.append(self._load_tree(c, device_type, owner, folder, existing))
            return existing
        loc = str(spaths.resolve_location(folder, model.location))
        fmt = model.format or ("VDI" if device_type == DeviceType.HardDisk else "RAW")
        if fmt.upper() in _CANONICAL_FORMATS:
            fmt = fmt.upper()  # names we handle are compared upper-case; others are kept as stored
        m = Medium(self, uid, loc, fmt, device_type)
        m.description_ = model.description
        m.type_ = MediumType[model.type]
        m.auto_reset_ = model.auto_reset
        m.properties = dict(model.properties)
        m.parent = parent
        m.registry = owner
        self.by_id[uid] = m
        for c in model.children:
            m.children.append(self._load_tree(c, device_type, owner, folder, m))
        return m

    def _load(self, reg: RegistryModel, owner: str, folder: Path) -> None:
        for model in reg.hard_disks:
            self._load_tree(model, DeviceType.HardDisk, owner, folder)
        for model in reg.dvd_images:
            self._load_tree(model, DeviceType.DVD, owner, folder)
        for model in reg.floppy_images:
            self._load_tree(model, DeviceType.Floppy, owner, folder)

    def load_global(self, reg: RegistryModel, folder: Path) -> None:
        self._load(reg, GLOBAL, folder)

    def load_machine(self, core) -> None:
        if core.data is not None:
            self._load(core.data.media_registry, core.id, core.path.parent)

    # --- queries ------------------------------------------------------------------------------------
    def bases(self, device_type: DeviceType) -> list[Medium]:
        return [m for m in self.by_id.values() if m.device_type == device_type and m.parent is None
                and m.state != MediumState.NotCreated and m.registry is not None]

    def users(self, medium: Medium) -> list:
        """Registered machines whose committed or session settings attach this medium."""
        out = []
        for core in self.vbox.cores:
            datas = [core.data] + ([core.direct.data] if core.direct is not None and core.direct.data else [])
            for d in datas:
                if d is not None and any(dev.medium is not None and str(dev.medium) == medium.id
                                         for c in d.hardware.storage_controllers for dev in c.devices):
                    out.append(core)
                    break
        return out

    def resolver(self):
        def resolve(parent_uuid: str) -> str:
            m = self.by_id.get(parent_uuid)
            if m is None:
                raise st.DiskImageError(f"parent image {{{parent_uuid}}} is not in the media registry")
            return m.location
        return resolve

    def registry_model(self, owner: str, folder: Path) -> RegistryModel:
        reg = RegistryModel()

        def model(m: Medium) -> MediumModel:
            return MediumModel(uuid=uuidlib.UUID(m.id), location=m.location,
                               format=m.format if m.device_type == DeviceType.HardDisk
                               or m.format != "RAW" else "RAW",
                               type=m.type_.name, auto_reset=m.auto_reset_, description=m.description_,
                               properties=dict(m.properties),
                               children=[model(c) for c in m.children
                                         if c.state != MediumState.NotCreated and mine(c)])

        def mine(m: Medium) -> bool:
            # a linked clone's diffs live in its own registry, nested under parents
            # that other registries own, so a registry holds the chains leading to its media
            return m.registry == owner or any(mine(c) for c in m.children)
        for m in self.by_id.values():
            if m.parent is not None or not mine(m) or m.state == MediumState.NotCreated:
                continue
            target = {DeviceType.HardDisk: reg.hard_disks, DeviceType.DVD: reg.dvd_images,
                      DeviceType.Floppy: reg.floppy_images}[m.device_type]
            target.append(model(m))
        return reg

    # --- changes --------------------------------------------------------------------------------
    def _tree(self, m: Medium) -> list[Medium]:
        out = [m]
        for c in m.children:
            out += self._tree(c)
        return out

    def register(self, m: Medium, owner: str) -> None:
        for other in self.by_id.values():
            if other is not m and other.registry is not None and other.location == m.location:
                raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                                f"Cannot register the {_KIND[m.device_type]} '{m.location}' "
                                f"{{{m.id}}} because a "
                                f"{_KIND[m.device_type]} '{other.location}' with UUID {{{other.id}}} "
                                f"already exists")
        self.by_id[m.id] = m
        m.registry = owner
        self.save_owner(m)
        ctx.fire(VBoxEventType.OnMediumRegistered, medium_id=m.id, medium_type=m.device_type, registered=True)

    # --- the media tree: the only code that changes parent, children and the id index ------------
    def add_made(self, m: Medium, parent: Medium | None, owner: str | None) -> None:
        """Index a medium whose image the service just made (a snapshot's or a clone's differencing
        image, a full clone) under its parent; the caller saves the owning settings file."""
        if parent is not None:
            m.parent = parent
            parent.children.append(m)
        m.registry = owner
        self.by_id[m.id] = m
        ctx.fire(VBoxEventType.OnMediumRegistered, medium_id=m.id, medium_type=m.device_type, registered=True)

    def drop_gone(self, m: Medium) -> None:
        """Take a medium whose image is gone (deleted or merged away) out of the tree and the index;
        the caller saves the owning settings file."""
        if m.parent is not None and m in m.parent.children:
            m.parent.children.remove(m)
        self.by_id.pop(m.id, None)
        m.registry = None
        m.state = MediumState.NotCreated
        ctx.fire(VBoxEventType.OnMediumRegistered, medium_id=m.id, medium_type=m.device_type,
                 registered=False)
        if ctx.bus is not None:
            ctx.bus.table.drop(m)

    def merged(self, src: Medium, tgt: Medium, into_parent: bool) -> None:
        """A merge on disk moved `src`'s blocks into `tgt` (its parent, or with `into_parent` False
        its child): the tree follows; `src` is dropped."""
        if into_parent:
            for c in list(src.children):
                c.parent = tgt
                tgt.children.append(c)
        else:
            grand = src.parent
            tgt.parent = grand
            if grand is not None:
                grand.children.append(tgt)
            tgt.registry = src.registry
        src.children = []
        self.drop_gone(src)

    def unregister(self, m: Medium) -> None:
        owner = m.base.registry if m.parent is not None else m.registry
        if m.parent is not None and m in m.parent.children:
            m.parent.children.remove(m)
        self.by_id.pop(m.id, None)
        m.registry = None
        self._save(owner)
        ctx.fire(VBoxEventType.OnMediumRegistered, medium_id=m.id, medium_type=m.device_type,
                 registered=False)
        if ctx.bus is not None:
            ctx.bus.table.drop(m)

    def save_owner(self, m: Medium) -> None:
        self._save(m.base.registry)

    def save_file_of(self, owner: str | None) -> None:
        """Save the settings file whose media registry `owner` names (GLOBAL or a machine id)."""
        self._save(owner)

    def _save(self, owner: str | None) -> None:
        if owner is None:
            return
        if owner == GLOBAL:
            self.vbox.save_main()
            return
        core = self.vbox.core_by_id(owner)
        if core is not None and core.data is not None:
            core.save()

    def adopt_attached(self, core) -> bool:
        """Media the machine now uses move from VirtualBox.xml into its .vbox; True if any moved."""
        moved = False
        for c in core.data.hardware.storage_controllers:
            for dev in c.devices:
                m = self.by_id.get(str(dev.medium)) if dev.medium is not None else None
                if m is None:
                    continue
                base = m.base
                if base.registry in (GLOBAL, None):
                    for x in self._tree(base):
                        x.registry = core.id
                    moved = True
        return moved

    def relocate_folder(self, old: Path, new: Path) -> None:
        for m in self.by_id.values():
            p = Path(m.location)
            try:
                rel = p.relative_to(old)
            except ValueError:
                continue
            m.location = str(new / rel)

    def detach_all(self, core, mode: CleanupMode) -> list[Medium]:
        """unregister(): drop the machine's attachments; return the media the mode asks for."""
        out = []
        for c in core.data.hardware.storage_controllers:
            for dev in c.devices:
                m = self.by_id.get(str(dev.medium)) if dev.medium is not None else None
                if m is None:
                    continue
                others = [u for u in self.users(m) if u is not core]
                if mode == CleanupMode.DetachAllReturnNone:
                    continue
                if m.device_type == DeviceType.HardDisk:
                    if m not in out:
                        out.append(m)
                elif mode == CleanupMode.Full or (mode == CleanupMode.DetachAllReturnHardDisksAndVMRemovable
                                                  and not others):
                    if m not in out:
                        out.append(m)
            c.devices = []
        for m in self.by_id.values():
            if m.registry == core.id:
                m.registry = GLOBAL  # kept known until delete_config or close
        return out

    def forget_registry(self, machine_id: str) -> None:
        for m in list(self.by_id.values()):
            if m.registry == machine_id:
                self.by_id.pop(m.id, None)

    def check_deletable(self, media: list[Medium], exclude_machine: str) -> None:
        for m in media:
            users = [u for u in self.users(m) if u.id != exclude_machine]
            if users:
                raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                                f"Medium '{m.location}' cannot be deleted because it is "
                                                         f"still attached to {len(users)} virtual machines")

    def forget(self, media: list[Medium]) -> None:
        """After delete_config: the deleted media leave the registry (children first)."""
        for m in sorted(media, key=lambda x: -len(self._ancestors(x))):
            if m.id in self.by_id:
                for c in list(m.children):
                    c.parent = None
                m.children = []
                self.unregister(m)
                m.state = MediumState.NotCreated

    def _ancestors(self, m: Medium) -> list[Medium]:
        out = []
        while m.parent is not None:
            m = m.parent
            out.append(m)
        return out

    # --- factories -----------------------------------------------------------------------------------
    def create(self, fmt: str, location: str, access_mode, device_type: DeviceType) -> Medium:
        fmt = (fmt or self.vbox.system_properties.default_hard_disk_format).upper()
        if fmt not in FORMATS:
            raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND, f"Invalid medium storage format '{fmt}'")
        if device_type not in (DeviceType.HardDisk, DeviceType.DVD, DeviceType.Floppy):
            raise VBoxError(rc.E_INVALIDARG, f"Invalid device type {int(device_type)}")
        if access_mode == AccessMode.ReadOnly:
            raise VBoxError(rc.E_INVALIDARG, "A medium to be created must be opened read-write")
        location = self._abs(location, fmt)
        for m in self.by_id.values():
            if m.location == location and m.registry is not None:
                raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                                f"Cannot create the {_KIND[device_type]} '{location}': a "
                                                         f"medium with this location is already registered")
        return Medium(self, str(uuidlib.uuid4()), location, fmt, device_type, MediumState.NotCreated)

    def _abs(self, location: str, fmt: str) -> str:
        if not location:
            raise VBoxError(rc.E_INVALIDARG, "The medium location must not be empty")
        if not os.path.isabs(location):
            if os.sep in location:
                raise VBoxError(rc.VBOX_E_FILE_ERROR, f"The given path '{location}' is not fully qualified")
            location = os.path.join(self.vbox.system_properties.default_machine_folder, location)
        if not os.path.splitext(location)[1] and fmt in ("VDI", "VMDK"):
            location += "." + fmt.lower()
        return os.path.normpath(location)

    def open(self, location: str, device_type: DeviceType, access_mode, force_new_uuid: bool) -> Medium:
        if device_type not in (DeviceType.HardDisk, DeviceType.DVD, DeviceType.Floppy):
            raise VBoxError(rc.E_INVALIDARG, f"Invalid device type {int(device_type)}")
        if not os.path.isabs(location):
            raise VBoxError(rc.VBOX_E_FILE_ERROR, f"The given path '{location}' is not fully qualified")
        location = os.path.normpath(location)
        for m in self.by_id.values():
            if m.location == location and m.registry is not None:
                if m.device_type != device_type:
                    raise VBoxError(rc.E_INVALIDARG, f"Medium '{location}' is already registered as a "
                                                     f"{_KIND[m.device_type]}")
                return m
        if not os.path.isfile(location):
            raise VBoxError(rc.VBOX_E_FILE_ERROR, f"Could not find file for the medium '{location}' "
                                                  "(VERR_FILE_NOT_FOUND)")
        parent = None
        if device_type == DeviceType.HardDisk:
            try:
                info = st.image_info(location)
            except Exception as e:
                raise VBoxError(
                    rc.VBOX_E_FILE_ERROR, f"Could not open the medium '{location}'.\n{e}"
                ) from None
            fmt = info.format
            uid = info.uuid or str(uuidlib.uuid4())
            if info.parent_uuid:
                parent = self.by_id.get(info.parent_uuid)
                if parent is None:
                    raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND,
                                    f"Parent medium with UUID {{{info.parent_uuid}}} of the medium "
                                    f"'{location}' is "
                                    "not found in the media registry")
        else:
            info, fmt, uid = None, "RAW", str(uuidlib.uuid4())
        if force_new_uuid and fmt not in ("VDI", "VMDK"):
            uid = str(uuidlib.uuid4())
        elif fmt == "VMDK" and (force_new_uuid or info is None or info.uuid is None):
            # VirtualBox gives a VMDK without ddb.uuid.image (qemu makes those) a UUID on open and keeps
            # it in the descriptor when it may write there
            uid = str(uuidlib.uuid4())
            if access_mode != AccessMode.ReadOnly:
                try:
                    st.set_uuids(location, image_uuid=uid)
                    info = None
                except (OSError, st.DiskImageError) as e:
                    log.info("cannot record a UUID in %s: %s", location, e)
        existing = self.by_id.get(uid)
        if existing is not None and existing.registry is not None:
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                            f"Cannot register the {_KIND[device_type]} '{location}' {{{uid}}} because a "
                            f"{_KIND[existing.device_type]} '{existing.location}' with UUID {{{uid}}} "
                            f"already exists")
        m = Medium(self, uid, location, fmt, device_type)
        m._info = info
        if parent is not None:
            m.parent = parent
            parent.children.append(m)
        self.register(m, parent.base.registry if parent is not None and parent.base.registry else GLOBAL)
        return m
