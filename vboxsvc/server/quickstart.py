"""The quick start: the service answers the machine list while it is still reading the settings.

Reading the settings (lxml, pydantic's settings models, every registered machine's file) is most
of a cold start: a command that starts the service would wait ~200 ms for it with 50 machines, and
the first command is nearly always `vboxmanage list vms`. That command needs only each machine's
name and UUID, which the head of its settings file holds.

The quick view is used only when the outcome of the full read is already known: after a full read
that found VirtualBox.xml valid, and again at its exit, the service leaves a record (in its runtime
folder) of exactly what it read and what it found: the identity of each file (device, inode, size,
modification and change times, taken before and after reading it), whether the machine's file was
valid (a missing one counts as invalid when no side file could bring it back), and the code that
judged them (the settings package, pydantic, the interpreter). When a new service finds
VirtualBox.xml and every registered machine's file still the same files, unchanged, judged by the
same code, the full read will find the same machines accessible with the same names and the same
ones inaccessible; so while a thread reads them, the bus answers IVirtualBox::machines and
IMachine::id/name/accessible from the quick view (a fresh read of each valid file's Machine element;
an inaccessible machine is named by its UUID, as the real one). Anything else, or a client with a
launch token (a VM process), first waits for the full read and then runs on the real objects, which
take over the quick objects' references. Any difference (a file edited, moved, touched, a machine
registered, an interrupted operation's journal, a new version of the code) means the full read
first, as without a quick start.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import PurePath
from xml.parsers import expat

from ..ipc.wire import KIND_GET

FORMAT = 2
# what the quick view answers, on its own objects only: the members `list vms` reads
ANSWERS = frozenset({("IVirtualBox", "machines"), ("IMachine", "id"), ("IMachine", "name"),
                     ("IMachine", "accessible")})
HEAD_BYTES = 64 * 1024   # the Machine element's start tag is within the first lines of a .vbox


class QuickMachine:
    __interface__ = "IMachine"
    __component__ = "MachineWrap"

    def __init__(self, uid: str, name: str, path: str, accessible: bool = True):
        # an inaccessible machine is named by its UUID, as the real one (MachineCore.name)
        self.id, self.name, self.path, self.accessible = uid, name, path, accessible


class QuickVirtualBox:
    __interface__ = "IVirtualBox"
    __component__ = "VirtualBoxWrap"

    def __init__(self, machines: list[QuickMachine]):
        self.machines = machines


def file_key(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def code_key() -> list:
    """The code whose judgement a record holds: the settings package's modules and pydantic's."""
    out: list = [FORMAT, list(sys.version_info[:3])]
    import settings

    folder = os.path.dirname(settings.__file__)
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            out.append([name, file_key(os.path.join(folder, name))])
    for entry in sys.path:
        version = os.path.join(entry or ".", "pydantic", "version.py")
        key = file_key(version)
        if key is not None:
            out.append(["pydantic", version, key])
            break
    return out


class _Done(Exception):
    """The Machine element is read: the rest of the file is not."""


def registry(main_path: str) -> list[tuple[str, str]] | None:
    """(uuid, settings file) of every MachineEntry in VirtualBox.xml, None when it does not parse."""
    entries: list[tuple[str, str]] = []
    stack: list[str] = []

    def start(name, attrs):
        stack.append(name)
        if name == "MachineEntry" and stack[-2:-1] == ["MachineRegistry"]:
            entries.append((attrs.get("uuid", ""), attrs.get("src", "")))

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = lambda _name: stack.pop()
    try:
        with open(main_path, "rb") as f:
            parser.ParseFile(f)
    except (OSError, expat.ExpatError):
        return None
    folder = PurePath(main_path).parent
    # spelled as the full read's paths are (settings.paths.resolve_location)
    return [(uid, str(folder / src)) for uid, src in entries]


def machine_head(path: str) -> tuple[str, str] | None:
    """(UUID as the API spells it, name) from a settings file's Machine element."""
    found: list = []

    def start(name, attrs):
        if name == "Machine":
            found.append((attrs.get("uuid"), attrs.get("name")))
            raise _Done

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    try:
        with open(path, "rb") as f:
            parser.Parse(f.read(HEAD_BYTES), False)
    except _Done:
        pass
    except (OSError, expat.ExpatError):
        return None
    if not found or found[0][0] is None or found[0][1] is None:
        return None
    uid = api_uuid(found[0][0])
    return (uid, found[0][1]) if uid is not None else None


def api_uuid(text: str) -> str | None:
    """A UUID as str(uuid.UUID(...)) spells it (the uuid module costs the start 1 ms)."""
    hexits = text.strip().strip("{}").replace("urn:", "").replace("uuid:", "").replace("-", "").lower()
    if len(hexits) != 32 or hexits.strip("0123456789abcdef"):
        return None
    return f"{hexits[:8]}-{hexits[8:12]}-{hexits[12:16]}-{hexits[16:20]}-{hexits[20:]}"


def quick_view(home: str, record_path: str) -> QuickVirtualBox | None:
    """The quick view of `home`'s machines, or None when the full read must come first."""
    journal = os.path.join(home, "journal")
    if os.path.isdir(journal) and any(n.endswith(".json") for n in os.listdir(journal)):
        return None
    try:
        with open(record_path, "rb") as f:
            record = json.loads(f.read())
    except (OSError, ValueError):
        return None
    main_path = os.path.join(home, "VirtualBox.xml")
    if (not isinstance(record, dict) or record.get("home") != home or record.get("code") != code_key()
            or file_key(main_path) != record.get("main")):
        return None
    entries = registry(main_path)
    files = record.get("machines")
    if entries is None or not isinstance(files, dict) or sorted(files) != sorted(p for _u, p in entries):
        return None
    machines = []
    for uid, path in entries:
        known = files[path]
        if not isinstance(known, dict) or file_key(path) != known.get("key"):
            return None
        if not known.get("valid"):
            # found invalid, and still the same file (or still missing, with nothing the full read
            # could restore it from): inaccessible again
            reg_uid = api_uuid(uid)
            if reg_uid is None or (known.get("key") is None and _side_files(path)):
                return None
            machines.append(QuickMachine(reg_uid, reg_uid, path, accessible=False))
            continue
        head = machine_head(path)
        if head is None or file_key(path) != known.get("key"):
            return None
        machines.append(QuickMachine(head[0], head[1], path))
    return QuickVirtualBox(machines)


def _side_files(path: str) -> bool:
    """Whether a settings file's side files (xmlio.side_names) exist: a missing file is restored
    from them by the full read."""
    return os.path.lexists(f"{path}-tmp") or os.path.lexists(f"{path}-prev")


def answers(msg: dict) -> bool:
    """Whether the quick view can answer this frame as the real objects would."""
    if type(msg) is not dict:
        return False
    op = msg.get("op")
    if op == "bye":
        return True
    if op == "hello":
        return msg.get("token") is None
    if op == "call":
        return not msg.get("w") and _answers(msg.get("o"), msg.get("k"), msg.get("m"), msg.get("a"))
    if op == "batch":
        calls = msg.get("b")
        return isinstance(calls, list) and all(isinstance(e, list) and len(e) == 4 and _answers(*e)
                                               for e in calls)
    return False


def _answers(target, kind, member, args) -> bool:
    return (type(target) in (QuickVirtualBox, QuickMachine) and kind == KIND_GET and not args
            and type(member) is str and (target.__interface__, member) in ANSWERS)


def before_reading(home: str) -> dict[str, list | None]:
    """The identity of VirtualBox.xml and of each registered machine's file before the full read."""
    main_path = os.path.join(home, "VirtualBox.xml")
    return {path: file_key(path) for path in [main_path] + [p for _u, p in registry(main_path) or []]}


def valid_after_read(home: str, before: dict[str, list | None], vbox) -> dict[str, list]:
    """Of the files identified before the full read, those it found valid (VirtualBox.xml: the read
    succeeded at all)."""
    good = {str(core.path) for core in vbox.cores if core.data is not None}
    good.add(os.path.join(home, "VirtualBox.xml"))
    return {path: key for path, key in before.items() if key is not None and path in good}


def leave_record(home: str, record_path: str, known: dict[str, list]) -> bool:
    """Record VirtualBox.xml and every registered machine's file with what the full read makes of
    each: `known` (path -> identity) names files the service read and found valid; any other file is
    read now (a file the service wrote since, at its exit; one found invalid). A missing machine file
    is recorded as such unless side files could bring it back. VirtualBox.xml must be valid, else the
    record is removed. Returns whether it was left."""
    main_path = os.path.join(home, "VirtualBox.xml")
    entries = registry(main_path)
    if entries is None:
        _remove(record_path)
        return False
    keys: dict[str, object] = {}
    for path in [main_path] + [p for _u, p in entries]:
        key = file_key(path)
        if key is None and path != main_path and not _side_files(path):
            keys[path] = {"key": None, "valid": False}
            continue
        valid = key is not None and (known.get(path) == key or _reads_valid(path, main_path))
        if key is None or file_key(path) != key or (path == main_path and not valid):
            _remove(record_path)
            return False
        keys[path] = key if path == main_path else {"key": key, "valid": valid}
    main = keys.pop(main_path)
    text = json.dumps({"home": home, "code": code_key(), "main": main, "machines": keys})
    tmp = record_path + ".tmp"   # one service per home writes it (the life lock)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, record_path)
    except OSError:
        _remove(tmp)
        return False
    return True


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _reads_valid(path: str, main_path: str) -> bool:
    """Whether the full read would accept the file now (the service has the settings code loaded)."""
    from settings.errors import SettingsError
    from settings.machine_file import MachineFile
    from settings.main_file import MainFile

    try:
        (MainFile if path == main_path else MachineFile).load(path)
    except (SettingsError, OSError):
        return False
    return True


def take_over(table, quick: QuickVirtualBox, vbox) -> None:
    """The real objects answer from now on under the references the quick ones were given (none
    when the full read failed: the references are then of objects that are gone)."""
    if vbox is None:
        table.drop(quick)
        for m in quick.machines:
            table.drop(m)
        return
    table.rebind(quick, vbox)
    views = {core.id: core.view for core in vbox.cores}
    for m in quick.machines:
        real = views.get(m.id)
        if real is not None:
            table.rebind(m, real)
        else:
            table.drop(m)
