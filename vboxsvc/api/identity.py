"""Which VirtualBox release vboxpy presents itself as.

Clients gate on the version string: Vagrant 2.3.x accepts only 4.0 ... 7.0 (and reads the
port forwards from the .vbox when the version is exactly 7.0.0), Vagrant 2.4 and newer clients
expect 7.1. vboxpy therefore speaks as 7.0 by default and as 7.1 when the user asks for it
with the environment variable `VBOXPY_VBOX_VERSION` (`7.0` or `7.1`; a full version such as
`7.1.6` picks its branch). The service and the CLI both read it, so `VBoxManage --version`,
IVirtualBox::version/revision/APIVersion and the output layouts that differ between the two
releases (showvminfo's `platformArchitecture`, `list ostypes`) always agree, provided the
service was started with the same setting (a running service keeps the identity it started
with; `vboxmanage` starts the service with its own environment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV = "VBOXPY_VBOX_VERSION"


@dataclass(frozen=True)
class Identity:
    branch: str           # "7.0" / "7.1"
    version: str          # IVirtualBox::version, `VBoxManage --version` before the `r`
    revision: int         # IVirtualBox::revision (the svn revision of that release)
    api_version: str      # IVirtualBox::APIVersion, `list systemproperties` "API version:"
    api_revision: int     # IVirtualBox::APIRevision (major, minor, build packed in decimal)

    @property
    def is_7_1(self) -> bool:
        return self.branch == "7.1"

    @property
    def full(self) -> str:
        """What `VBoxManage --version` prints."""
        return f"{self.version}r{self.revision}"


IDENTITIES = {
    "7.0": Identity("7.0", "7.0.22", 165102, "7_0", 7000022),
    "7.1": Identity("7.1", "7.1.6", 167084, "7_1", 7001006),
}
DEFAULT = "7.0"


def branch_of(text: str) -> str | None:
    """`7.1`, `7.1.6`, `7.1.6r167084` -> `7.1`; None for anything we cannot be."""
    parts = text.strip().split(".")
    if len(parts) < 2:
        return None
    branch = f"{parts[0]}.{parts[1].split('r')[0].split('_')[0]}"
    return branch if branch in IDENTITIES else None


def current(environ=None) -> Identity:
    """The identity chosen by the environment (the default when unset or not one we can be)."""
    env = os.environ if environ is None else environ
    return IDENTITIES[branch_of(env.get(ENV, "")) or DEFAULT]
