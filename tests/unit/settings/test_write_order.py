"""A model of what a power loss keeps, checked against the settings save's order of file-system calls.

The save runs against a recording file system. For every point at which the machine may lose
power, every state the disk can come back in is built: file data survives only if it was fsynced,
directory changes survive up to the last directory fsync plus any prefix of the later ones (a
journalling file system keeps their order, not all of them). In each such state, loading with
recovery must give the old or the new content; and a process crash (everything in the page cache
survives) must never leave the name missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from settings import xmlio
from settings.main_file import MainFile

DIR = Path("/model")
F = DIR / "VirtualBox.xml"


class ModelFs(xmlio.FsOps):
    """Inodes with live and durable data; a directory with a log of its changes."""

    def __init__(self, names: dict[Path, bytes]):
        self.data: dict[int, bytes] = {}
        self.durable: dict[int, bytes] = {}
        self.names: dict[Path, int] = {}
        self.base_names: dict[Path, int] = {}
        self.dir_log: list[tuple] = []      # ("set", name, inode) / ("del", name)
        self.synced_upto = 0                # dir_log entries made durable by a directory fsync
        self.history: list[tuple[int, int]] = []    # after each call: (len(dir_log), synced_upto)
        self.data_history: list[dict[int, bytes]] = []
        for name, content in names.items():
            ino = self._new(content)
            self.durable[ino] = content
            self.names[name] = self.base_names[name] = ino
        self._mark()

    def _new(self, content: bytes) -> int:
        ino = len(self.data) + 1
        self.data[ino] = content
        return ino

    def _mark(self) -> None:
        self.history.append((len(self.dir_log), self.synced_upto))
        self.data_history.append(dict(self.durable))

    def _set(self, name: Path, ino: int) -> None:
        self.names[name] = ino
        self.dir_log.append(("set", name, ino))

    def _del(self, name: Path) -> None:
        del self.names[name]
        self.dir_log.append(("del", name))

    # FsOps
    def size(self, path):
        ino = self.names.get(Path(path))
        return None if ino is None else len(self.data[ino])

    def read(self, path):
        ino = self.names.get(Path(path))
        if ino is None:
            raise FileNotFoundError(path)
        return self.data[ino]

    def write_synced(self, path, data):
        self.write_unsynced(path, data)
        self.durable[self.names[Path(path)]] = bytes(data)
        self._mark()

    def write_unsynced(self, path, data):
        path = Path(path)
        ino = self.names.get(path)
        if ino is None:
            ino = self._new(b"")
            self._set(path, ino)
        self.data[ino] = bytes(data)
        self._mark()

    def link(self, src, dst):
        src, dst = Path(src), Path(dst)
        if dst in self.names:
            raise FileExistsError(dst)
        self._set(dst, self.names[src])
        self._mark()

    def unlink(self, path):
        if Path(path) in self.names:
            self._del(Path(path))
        self._mark()

    def replace(self, src, dst):
        src, dst = Path(src), Path(dst)
        ino = self.names[src]
        self._del(src)
        self._set(dst, ino)
        self._mark()

    def fsync_dir(self, directory):
        self.synced_upto = len(self.dir_log)
        self._mark()

    # what a crash leaves
    def after_power_loss(self, step: int) -> list[ModelFs]:
        """Every disk state possible if power fails right after call number `step`."""
        logged, synced = self.history[step]
        durable = self.data_history[step]
        out = []
        for keep in range(synced, logged + 1):
            names = dict(self.base_names)
            for entry in self.dir_log[:keep]:
                if entry[0] == "set":
                    names[entry[1]] = entry[2]
                else:
                    names.pop(entry[1], None)
            out.append(ModelFs({n: durable.get(ino, b"") for n, ino in names.items()}))
        return out

    def after_process_crash(self, step: int) -> ModelFs:
        logged, _ = self.history[step]
        names = dict(self.base_names)
        for entry in self.dir_log[:logged]:
            if entry[0] == "set":
                names[entry[1]] = entry[2]
            else:
                names.pop(entry[1], None)
        return ModelFs({n: self.data[ino] for n, ino in names.items()})


def _content(tag: str) -> bytes:
    mf = MainFile.new(Path("/nonexistent/VirtualBox.xml"))
    mf.settings.extra_data["tag"] = tag
    root = mf.tree.getroot()
    from settings import main_xml
    main_xml.write_main(root, mf.settings, mf.version.minor, DIR)
    return xmlio.serialize(mf.tree)


OLD, NEW, OLDER = _content("old"), _content("new"), _content("older")


def _loaded(fs: ModelFs) -> bytes:
    xmlio.recover(F, fs)
    data = fs.read(F)
    xmlio.parse_bytes(data, F)
    return data


def _check(writer, start: dict[Path, bytes]) -> list[str]:
    fs = ModelFs(start)
    writer(F, NEW, fs)
    bad = []
    for step in range(len(fs.history)):
        crashed = fs.after_process_crash(step)
        if crashed.size(F) is None:
            bad.append(f"process crash after call {step}: no file under the name")
        for n, state in enumerate(fs.after_power_loss(step)):
            try:
                got = _loaded(state)
            except Exception as e:
                bad.append(f"power loss after call {step} (variant {n}): {type(e).__name__}: {e}")
                continue
            if got not in (OLD, NEW):
                bad.append(f"power loss after call {step} (variant {n}): neither old nor new content")
    return bad


@pytest.mark.parametrize("start", [{F: OLD}, {F: OLD, DIR / "VirtualBox.xml-prev": OLDER},
                                   {F: OLD, DIR / "VirtualBox.xml-tmp": b"<?xml torn"}])
def test_every_crash_and_power_loss_state_recovers(start):
    assert _check(xmlio.atomic_write, start) == []


def test_the_save_ends_durable():
    fs = ModelFs({F: OLD})
    xmlio.atomic_write(F, NEW, fs)
    last = fs.after_power_loss(len(fs.history) - 1)
    assert len(last) == 1 and _loaded(last[0]) == NEW


def _without_data_fsync(path, data, fs):
    tmp, _prev = xmlio.side_names(Path(path))
    fs.write_unsynced(tmp, data)
    fs.replace(tmp, path)
    fs.fsync_dir(DIR)


def _rename_old_away_first(path, data, fs):
    """VirtualBox's order: old file to -prev, then the new one to the name."""
    tmp, prev = xmlio.side_names(Path(path))
    fs.write_synced(tmp, data)
    fs.replace(path, prev)
    fs.replace(tmp, path)
    fs.fsync_dir(DIR)


def test_the_model_catches_a_missing_data_fsync_and_a_nameless_moment():
    assert any("power loss" in b for b in _check(_without_data_fsync, {F: OLD}))
    assert any("no file under the name" in b for b in _check(_rename_old_away_first, {F: OLD}))
