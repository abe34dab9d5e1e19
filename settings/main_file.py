"""VirtualBox.xml: the global settings file in the VirtualBox user home.

    mf = MainFile.load(path)          # or MainFile.new(path) for a fresh setup
    mf.settings.machine_registry.append(MachineRegistryEntry(uuid=..., src="/abs/vm.vbox"))
    mf.save()

A new file starts at 1.12 as VirtualBox 7 writes it; an existing one keeps its version.
Relative paths in pre-4.0 files (machine entries, media) are relative to the file's folder.
"""

from __future__ import annotations

from pathlib import Path

from . import main_xml, xmlio
from .errors import SettingsError
from .models import MachineRegistryEntry, MainSettings, SystemProperties
from .paths import default_machine_folder, resolve_location
from .settings_file import SettingsFile
from .version import NEW_MAIN_MINOR, make_version


class MainFile(SettingsFile):
    settings: MainSettings

    @property
    def folder(self) -> Path:
        return self.path.parent

    @classmethod
    def load(cls, path: str | Path) -> MainFile:
        path = Path(path).absolute()
        tree, version = xmlio.parse_file(path)
        self = cls(path, tree, version, exists=True)
        try:
            self.settings = main_xml.read_main(tree.getroot(), version.minor, self.folder)
        except SettingsError as e:
            raise cls._reraise(e, path)
        return self

    @classmethod
    def new(cls, path: str | Path) -> MainFile:
        """A fresh VirtualBox.xml (not written until save())."""
        path = Path(path).absolute()
        version = make_version(NEW_MAIN_MINOR)
        tree = xmlio.new_document(version)
        main_xml.write_main(tree.getroot(), MainSettings(), version.minor, path.parent)
        main_xml.add_new_file_defaults(tree.getroot())
        self = cls(path, tree, version, exists=False)
        self.settings = MainSettings(system_properties=SystemProperties(
            default_machine_folder=str(default_machine_folder(None)),
            vrde_auth_library="VBoxAuth", web_service_auth_library="VBoxAuth"))
        return self

    def machine_path(self, entry: MachineRegistryEntry) -> Path:
        """Where a registered machine's settings file is (relative `src` of old setups resolved)."""
        return resolve_location(self.folder, entry.src)

    def save(self) -> None:
        try:
            s = MainSettings.model_validate(self.settings.model_dump())
        except ValueError as e:
            raise SettingsError(f"Invalid global settings: {e}", self.path)
        minor = self._target_minor(0)
        self._commit(self.path, minor, lambda root, sv: main_xml.write_main(root, s, sv, self.folder))
