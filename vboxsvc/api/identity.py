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

ENV = "VBOXPY_VBOX_VERSION"


class Identity:
    """One release (a plain class: every `vboxmanage` run reads this, dataclasses cost it time)."""

    __slots__ = ("branch", "version", "revision", "api_version", "api_revision")

    def __init__(self, branch: str, version: str, revision: int, api_version: str, api_revision: int):
        self.branch = branch              # "7.0" / "7.1"
        self.version = version            # IVirtualBox::version, `VBoxManage --version` before the `r`
        self.revision = revision          # IVirtualBox::revision (the svn revision of that release)
        self.api_version = api_version    # IVirtualBox::APIVersion, `list systemproperties` "API version:"
        self.api_revision = api_revision  # IVirtualBox::APIRevision (major, minor, build packed in decimal)

    def _key(self) -> tuple:
        return (self.branch, self.version, self.revision, self.api_version, self.api_revision)

    def __eq__(self, other) -> bool:
        return isinstance(other, Identity) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __setattr__(self, name, value):
        if hasattr(self, name):
            raise AttributeError(f"cannot assign to field '{name}'")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return "Identity({!r}, {!r}, {!r}, {!r}, {!r})".format(*self._key())

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
