"""Intent records for operations that change several files, so a crash between them is finished
(or undone) by the next start instead of leaving a machine inaccessible.

A rename of a machine with its folder moves the folder, then the .vbox inside it, then points
VirtualBox.xml at the new file: three steps no single system call covers. Before the first one a
record naming the old and new paths is written (synced) under `<home>/journal/`; it is removed
once VirtualBox.xml is saved. `replay()` at service start looks at what is on disk for each record
left behind and rolls the operation forward when the folder already moved (the only state from
which the old path can no longer work), or simply drops the record when nothing moved yet.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from settings import crashpoint, xmlio
from settings.errors import SettingsError

log = logging.getLogger("vboxsvc.journal")

FOLDER = "journal"


def _dir(home: Path) -> Path:
    return Path(home) / FOLDER


def begin(home: Path, name: str, record: dict) -> Path:
    """Write `record` durably before the operation's first step; returns the record's path."""
    d = _dir(home)
    d.mkdir(mode=0o700, exist_ok=True)
    path = d / f"{name}.json"
    xmlio.atomic_write(path, json.dumps(record, sort_keys=True).encode())
    return path


def end(path: Path) -> None:
    """The operation is complete on disk: drop its record (and the save's side files)."""
    crashpoint.hit("journal.end")
    for p in (path, *xmlio.side_names(path)):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def pending(home: Path) -> list[tuple[Path, dict]]:
    d = _dir(home)
    out = []
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.json")):
        try:
            out.append((p, json.loads(p.read_bytes())))
        except (OSError, ValueError):
            log.warning("dropping an unreadable journal record %s", p)
            end(p)
    return out


def rename_forward(record: dict) -> bool:
    """Finish a machine rename on disk. Returns True when the machine now lives at `new_file`
    (the registry must point there), False when nothing had moved (the old paths stand)."""
    old_file, new_file = Path(record["old_file"]), Path(record["new_file"])
    old_folder, new_folder = Path(record["old_folder"]), Path(record["new_folder"])
    if new_file.exists():
        return True
    if old_folder != new_folder:
        if not new_folder.exists():
            return False                    # the folder never moved
        moved_old = new_folder / old_file.name
    else:
        moved_old = old_file
    try:
        xmlio.recover(moved_old)
    except SettingsError:
        pass
    if not moved_old.exists():
        return new_file.exists()
    os.rename(moved_old, new_file)
    xmlio.OS_FS.fsync_dir(new_file.parent)
    for suffix in ("-prev", "-tmp"):
        try:
            os.unlink(str(moved_old) + suffix)
        except FileNotFoundError:
            pass
    log.warning("finished the interrupted rename of %s to %s", old_file, new_file)
    return True
