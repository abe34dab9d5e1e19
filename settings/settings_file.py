"""What VirtualBox.xml and .vbox files share: load with errors naming the file, the version
bookkeeping (keep the read version, bump when needed, one backup before the first bump) and the
crash-safe save.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from . import xmlio
from .errors import SettingsError
from .version import NEWEST_KNOWN, SettingsVersion, make_version


class SettingsFile:
    """A parsed settings file. `version` is the version on disk (as read or last written);
    `path` where it lives."""

    def __init__(self, path: Path, tree: etree._ElementTree, version: SettingsVersion, exists: bool):
        self.path = Path(path)
        self._tree = tree
        self.version = version
        self._read_version = version if exists else None  # None: nothing to back up
        self._layout = version.minor  # the layout the tree is in now

    @property
    def tree(self) -> etree._ElementTree:
        """The underlying XML document (unmodelled content lives here)."""
        return self._tree

    @staticmethod
    def _parse(path: Path) -> tuple[etree._ElementTree, SettingsVersion]:
        return xmlio.parse_file(path)

    @staticmethod
    def _reraise(e: SettingsError, path: Path) -> SettingsError:
        if e.path is None:
            return SettingsError(e.problem, path, e.line)
        return e

    def _target_minor(self, needed: int) -> int:
        base = NEWEST_KNOWN if self.version.future else self.version.minor
        return max(base, needed)

    def _commit(self, target: str | Path, minor: int, write) -> None:
        """Write the models into the tree at version 1.`minor` and store it at `target`."""
        target = Path(target)
        root = self._tree.getroot()
        write(root, minor)
        new_version = make_version(minor)
        root.set("version", new_version.full)
        data = xmlio.serialize(self._tree)
        read = self._read_version
        if read is not None and not read.future and read.minor < new_version.minor and target == self.path:
            xmlio.special_backup(self.path, read.full)
        xmlio.atomic_write(target, data)
        self.path = target
        self.version = new_version
        self._read_version = new_version
