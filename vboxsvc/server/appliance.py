"""IAppliance: reading an OVF/OVA, interpreting it into editable descriptions (appliance_vsd),
importing machines from it, and exporting machines into one (ApplianceImpl.cpp's roles). The format work lives
in appliance_ovf (descriptor), appliance_io (folders, OVA tars, manifests), appliance_import and
appliance_export; disks go through vmm.storage.
"""

from __future__ import annotations

import os

from ..api import errors as rc
from ..api.enums import ExportOptions, ImportOptions
from ..api.errors import VBoxError
from .appliance_vsd import VirtualSystemDescription
from .progress import Progress, run_in_thread


def _err(code: int, text: str) -> VBoxError:
    return VBoxError(code, text, "IAppliance", "ApplianceWrap")


class Appliance:
    __interface__ = "IAppliance"
    __component__ = "ApplianceWrap"

    def __init__(self, vbox):
        self._vbox = vbox
        self.path = ""
        self.envelope = None
        self.virtual_system_descriptions: list[VirtualSystemDescription] = []
        self.machines: list[str] = []
        self.warnings: list[str] = []
        self._busy = False

    # ---- reading and interpreting ----------------------------------------------------------------

    @property
    def disks(self) -> list[str]:
        """One tab-separated line per disk of the descriptor, as IAppliance::getDisks gives them."""
        if self.envelope is None:
            return []
        out = []
        for d in self.envelope.disks.values():
            f = self.envelope.files.get(d.file_ref)
            out.append("\t".join([d.disk_id, str(d.capacity), str(d.populated), d.format,
                                  f.href if f else "", str(f.size if f else -1),
                                  str(f.chunk_size if f else -1),
                                  f.compression if f else ""]))
        return out

    def read(self, file: str):
        if not os.path.isabs(file):
            raise _err(rc.E_INVALIDARG, f"The given path '{file}' is not fully qualified")
        if self.envelope is not None or self.path:
            raise _err(rc.VBOX_E_INVALID_OBJECT_STATE, "Cannot read an appliance twice")
        self.path = file
        progress = Progress(f"Reading appliance '{file}'", initiator=self)

        def work(_p):
            from .appliance_io import ApplianceSource
            from .appliance_ovf import MAX_DESCRIPTOR, parse

            src = ApplianceSource(file)
            try:
                return parse(src.read(src.descriptor_name, MAX_DESCRIPTOR), file)
            finally:
                src.close()

        def done(result, err):
            if err is None:
                self.envelope = result
        return run_in_thread(progress, work, done)

    def interpret(self) -> None:
        from .appliance_import import interpret

        if self.envelope is None:
            raise _err(rc.E_FAIL, "Cannot interpret appliance without reading it first (call read() before "
                                  "interpret())")
        self.warnings = []
        self.virtual_system_descriptions = interpret(self._vbox, self.envelope, self.path, self.warnings)

    def get_warnings(self) -> list[str]:
        return list(self.warnings)

    def import_machines(self, options=()):
        from .appliance_import import import_machines

        if not self.virtual_system_descriptions or self.envelope is None:
            raise _err(rc.VBOX_E_INVALID_OBJECT_STATE, "Appliance is not interpreted yet")
        if self._busy:
            raise _err(rc.VBOX_E_INVALID_OBJECT_STATE, "The appliance is busy")
        opts = {ImportOptions(int(o)) for o in options}
        return import_machines(self, opts)

    # ---- exporting -------------------------------------------------------------------------------

    def write(self, format: str, options, path: str):  # noqa: A002 - the API's parameter name
        from .appliance_export import write_appliance

        fmt = (format or "ovf-1.0").lower()
        if fmt not in ("ovf-0.9", "ovf-1.0", "ovf-2.0"):
            raise _err(rc.VBOX_E_NOT_SUPPORTED, f"Unsupported OVF format '{format}'")
        if not os.path.isabs(path):
            raise _err(rc.E_INVALIDARG, f"The given path '{path}' is not fully qualified")
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".ovf", ".ova"):
            raise _err(rc.VBOX_E_FILE_ERROR, "Appliance file must have .ovf or .ova extension")
        if not self.virtual_system_descriptions:
            raise _err(rc.VBOX_E_INVALID_OBJECT_STATE,
                       "Nothing to export: no machine was added with exportTo()")
        opts = {ExportOptions(int(o)) for o in options}
        self.path = path
        return write_appliance(self, fmt, opts, path)

    # ---- passwords (encrypted media are not supported) ---------------------------------------------

    def get_password_ids(self) -> list[str]:
        return []

    def get_medium_ids_for_password_id(self, password_id: str) -> list[str]:
        raise _err(rc.VBOX_E_OBJECT_NOT_FOUND, f"Unknown password identifier '{password_id}'")

    def add_passwords(self, identifiers: list[str], passwords: list[str]) -> None:
        if identifiers or passwords:
            raise _err(rc.VBOX_E_NOT_SUPPORTED, "The appliance has no encrypted media")

    def create_virtual_system_descriptions(self, requested: int) -> int:
        if requested < 0 or requested > 64:
            raise _err(rc.E_INVALIDARG, f"Invalid number of virtual system descriptions {requested}")
        for _ in range(requested):
            self.virtual_system_descriptions.append(VirtualSystemDescription())
        return len(self.virtual_system_descriptions)
