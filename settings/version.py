"""Settings format versions (`1.x-<platform>`), as `ConfigFileBase::parseVersion` handles them.

Known versions are 1.3 .. 1.20 (VirtualBox 2.0 .. 7.1); a newer minor or major loads best effort
and is written back as the newest known version; anything else cannot be handled.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

OLDEST_KNOWN = 3          # 1.3, VirtualBox 2.0
OLDEST_WRITTEN = 7        # VirtualBox writes anything older as 1.7
NEWEST_KNOWN = 20         # 1.20, VirtualBox 7.1
NEW_MACHINE_MINOR = 19    # what VirtualBox 7 writes for a new machine
NEW_MAIN_MINOR = 12       # VBOX_XML_VERSION: what a new VirtualBox.xml starts at

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:-(.*))?$")


def host_platform() -> str:
    """The platform suffix this host writes (VBOX_XML_PLATFORM)."""
    p = sys.platform
    if p.startswith("linux"):
        return "linux"
    if p == "darwin":
        return "macosx"
    if p in ("win32", "cygwin"):
        return "windows"
    for name in ("freebsd", "netbsd", "openbsd", "solaris"):
        if p.startswith(name) or (name == "solaris" and p.startswith("sunos")):
            return name
    return "linux"


@dataclass(frozen=True)
class SettingsVersion:
    """A parsed `version` attribute. `minor` is the 1.x number; `future` marks newer-than-known."""

    minor: int
    platform: str
    full: str
    future: bool = False

    @property
    def number(self) -> str:
        return f"1.{self.minor}"

    def __str__(self) -> str:
        return self.full


def parse_version(text: str) -> SettingsVersion | None:
    """Parse `1.x-<os>`; None when VirtualBox could not handle it (caller raises its message)."""
    m = _VERSION_RE.match(text.strip())
    if not m:
        return None
    major, minor, platform = int(m.group(1)), int(m.group(2)), m.group(3) or ""
    if major > 1 or (major == 1 and minor > NEWEST_KNOWN):
        return SettingsVersion(NEWEST_KNOWN, platform, text, future=True)
    if major == 1 and OLDEST_KNOWN <= minor <= NEWEST_KNOWN:
        return SettingsVersion(minor, platform, text)
    return None


def make_version(minor: int) -> SettingsVersion:
    """The version this host writes for a given 1.x."""
    minor = max(minor, OLDEST_WRITTEN)
    return SettingsVersion(minor, host_platform(), f"1.{minor}-{host_platform()}")
