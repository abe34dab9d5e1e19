"""A machine settings file (`<name>.vbox`, or `<name>.xml` in a pre-4.0 layout).

    mf = MachineFile.load(path)
    mf.settings.hardware.memory_mb = 1024
    mf.save()                         # or mf.save(new_path) when the machine is renamed/moved

New files are written as 1.19 (what VirtualBox 7 writes). An existing file keeps its version
unless a setting in use needs a newer one; then, once, the old file is copied to
`<base>-<oldversion>.<ext>` and the tree is moved to the newer layout.
"""

from __future__ import annotations

from pathlib import Path

from . import bump, machine_xml, xmlio
from .errors import SettingsError
from .models import MachineSettings
from .settings_file import SettingsFile
from .version import NEW_MACHINE_MINOR, make_version


class MachineFile(SettingsFile):
    settings: MachineSettings

    @property
    def folder(self) -> Path:
        """The machine folder: relative paths in the file are relative to it."""
        return self.path.parent

    @classmethod
    def load(cls, path: str | Path) -> MachineFile:
        path = Path(path).absolute()
        tree, version = xmlio.parse_file(path)
        self = cls(path, tree, version, exists=True)
        try:
            self.settings = machine_xml.read_machine(tree.getroot(), version.minor, self.folder)
        except SettingsError as e:
            raise cls._reraise(e, path)
        return self

    @classmethod
    def new(cls, path: str | Path, settings: MachineSettings) -> MachineFile:
        """A new machine file (not written until save())."""
        path = Path(path).absolute()
        version = make_version(NEW_MACHINE_MINOR)
        self = cls(path, xmlio.new_document(version), version, exists=False)
        self.settings = settings
        return self

    def save(self, path: str | Path | None = None) -> None:
        """Write the settings (crash-safe). With `path`, write there and make it the file's path
        (the old file is left for the caller to delete)."""
        target = Path(path).absolute() if path is not None else self.path
        try:
            s = MachineSettings.model_validate(self.settings.model_dump())
        except ValueError as e:
            raise SettingsError(f"Invalid machine settings: {e}", target)
        minor = self._target_minor(bump.required_minor(s, self._layout))
        if minor > self._layout:
            bump.migrate_layout(self._tree.getroot(), self._layout, minor)
            self._layout = minor
        folder = target.parent
        self._commit(target, minor, lambda root, sv: machine_xml.write_machine(root, s, sv, folder))
