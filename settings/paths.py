"""Where VirtualBox keeps its files (glue/com.cpp GetVBoxUserHomeDirectory, SystemPropertiesImpl.cpp).

The user home for VirtualBox (`GetVBoxUserHomeDirectory`), the default machine folder, the
settings-file name of a new machine (`composeMachineFilename` with its name sanitising), and the
per-machine folders (`Logs/`, `Snapshots/`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from . import home
from .errors import SettingsError

if TYPE_CHECKING:  # uuid and datetime are imported where used: every client resolves the home first
    import uuid as uuidlib
    from datetime import datetime

DEFAULT_MACHINE_FOLDER_NAME = "VirtualBox VMs"
LEGACY_MACHINE_FOLDER = "Machines"   # stored by pre-4.0 setups; means "use the default"


def user_home_dir() -> Path:
    """$HOME, except for root, whose home comes from the account database (RTPathUserHome)."""
    return Path(home.user_home_dir())


def vbox_user_home(create: bool = True) -> Path:
    """VBOX_USER_HOME made absolute; else ~/.VirtualBox if it exists; else
    $XDG_CONFIG_HOME/VirtualBox (default ~/.config/VirtualBox), created with mode 0700."""
    return Path(home.vbox_user_home(create))


def validate_machine_folder(path: str | Path) -> Path:
    """`setproperty machinefolder` accepts absolute paths only."""
    text = str(path)
    if not text or not os.path.isabs(text):
        raise SettingsError(f"Given default machine folder '{text}' is not fully qualified")
    return Path(text)


def default_machine_folder(stored: str | None) -> Path:
    """The machine folder: the stored value, or `<home>/VirtualBox VMs` when it is empty or the
    pre-4.0 `Machines`."""
    if not stored or stored == LEGACY_MACHINE_FOLDER:
        return user_home_dir() / DEFAULT_MACHINE_FOLDER_NAME
    p = Path(stored)
    if not p.is_absolute():
        p = vbox_user_home(create=False) / p
    return p


def _allowed(ch: str) -> bool:
    return (ch in " ()-._" or ("0" <= ch <= "9") or ("A" <= ch <= "Z") or ("a" <= ch <= "z")
            or ("\u00a0" <= ch <= "\ud7af"))


def sanitise_name(name: str) -> str:
    """VirtualBox's `sanitiseMachineFilename`: unsafe characters, a leading `.`/`-`, a trailing `.`
    and leading/trailing spaces become `_`."""
    chars = [c if _allowed(c) else "_" for c in name]
    if chars and chars[0] in ".-":
        chars[0] = "_"
    if chars and chars[-1] == ".":
        chars[-1] = "_"
    i = 0
    while i < len(chars) and chars[i] == " ":
        chars[i] = "_"
        i += 1
    j = len(chars) - 1
    while j >= 0 and chars[j] == " ":
        chars[j] = "_"
        j -= 1
    return "".join(chars)


def compose_machine_filename(name: str, group: str = "/", base_folder: str | Path | None = None,
                             default_folder: str | Path | None = None,
                             uuid: uuidlib.UUID | str | None = None,
                             directory_includes_uuid: bool = False) -> Path:
    """`<base or default>[<group>]/<dir>/<name>.vbox` (IVirtualBox::composeMachineFilename)."""
    if not name or not name.strip():
        raise SettingsError("Machine name is invalid, must not be empty")
    if base_folder:
        base = Path(base_folder)
        if not base.is_absolute():
            raise SettingsError(f"Given base folder '{base_folder}' is not fully qualified")
    elif default_folder:
        base = Path(default_folder)
    else:
        base = default_machine_folder(None)
    if group and group != "/":
        if not group.startswith("/"):
            raise SettingsError(f"Invalid machine group '{group}'")
        base = base.joinpath(*[p for p in group.split("/") if p])
    dir_name = name
    if directory_includes_uuid:
        if uuid is None:
            raise SettingsError("A machine UUID is needed when the directory includes the UUID")
        import uuid as uuidlib
        dir_name = f"{name} ({uuidlib.UUID(str(uuid).strip('{}'))})"
    return base / sanitise_name(dir_name) / (sanitise_name(name) + ".vbox")


def machine_folder(settings_file: str | Path) -> Path:
    return Path(settings_file).parent


def log_folder(settings_file: str | Path) -> Path:
    """`<machine folder>/Logs`, or `$VBOX_USER_LOGHOME/<machine name>` when that is set."""
    loghome = os.environ.get("VBOX_USER_LOGHOME")
    if loghome:
        return Path(os.path.abspath(loghome)) / Path(settings_file).stem
    return machine_folder(settings_file) / "Logs"


def snapshot_folder(settings_file: str | Path, configured: str | None = "Snapshots") -> Path:
    """The configured snapshot folder; relative ones live inside the machine folder."""
    configured = configured or "Snapshots"
    p = Path(configured)
    return p if p.is_absolute() else machine_folder(settings_file) / p


def state_file_name(when: datetime | None = None) -> str:
    """A saved-state file name as VirtualBox makes them: `2024-05-01T10-00-00-123456789Z.sav` (UTC,
    nanoseconds, dashes in the time); it goes into the snapshot folder."""
    from datetime import UTC, datetime
    when = (when or datetime.now(UTC)).astimezone(UTC)
    nanos = when.microsecond * 1000
    return when.strftime("%Y-%m-%dT%H-%M-%S-") + f"{nanos:09d}Z.sav"


def diff_image_name(medium_uuid: uuidlib.UUID | str, ext: str = "vdi") -> str:
    """A snapshot differencing image's file name: `{<uuid>}.vdi` in the snapshot folder."""
    import uuid as uuidlib
    return "{" + str(uuidlib.UUID(str(medium_uuid).strip("{}"))) + "}." + ext


def nvram_file_name(settings_file: str | Path) -> Path:
    """The machine's NVRAM file: `<vm file basename>.nvram` next to the .vbox."""
    p = Path(settings_file)
    return p.with_name(p.stem + ".nvram")


def resolve_location(base_folder: str | Path, location: str) -> Path:
    """A stored medium/state path made absolute against the registry owner's folder."""
    if "://" in location:
        return Path(location)
    p = Path(location)
    return p if p.is_absolute() else Path(base_folder) / p


def relative_location(base_folder: str | Path, location: str | Path) -> str:
    """Store a path relative to the owner's folder when it lies inside it, else absolute."""
    p = Path(location)
    base = Path(base_folder)
    if p.is_absolute():
        try:
            return str(p.relative_to(base))
        except ValueError:
            return str(p)
    return str(p)
