"""The bus endpoint, spawn lock and life lock are named after the canonical VirtualBox home: every
spelling of one folder gives one name, another folder another, the account's default home the
fixed name systemd's socket unit uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vboxsvc.ipc import paths


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("VBOXPY_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("VBOX_USER_HOME", raising=False)
    home = tmp_path / "vb"
    home.mkdir()
    return tmp_path, home


def _names(monkeypatch, value: str | None) -> tuple[str, str, str]:
    if value is None:
        monkeypatch.delenv("VBOX_USER_HOME", raising=False)
    else:
        monkeypatch.setenv("VBOX_USER_HOME", value)
    return paths.socket_path(), paths.spawn_lock_path(), paths.life_lock_path()


def test_spellings_of_one_home_share_the_names(env, monkeypatch):
    base, home = env
    (base / "link").symlink_to(home)
    monkeypatch.chdir(base)
    spellings = [str(home), str(home) + "/", str(base / "link"), "vb", "./link/",
                 str(base / "vb" / ".." / "vb")]
    names = {_names(monkeypatch, s) for s in spellings}
    assert len(names) == 1
    sock, spawn, life = names.pop()
    tag = paths.home_tag(str(home))
    assert len(tag) == 12
    assert (os.path.basename(sock), os.path.basename(spawn), os.path.basename(life)) == (
        f"vboxsvc-{tag}.sock", f"vboxsvc-{tag}.spawn.lock", f"vboxsvc-{tag}.pid")


def test_another_home_gets_other_names(env, monkeypatch):
    base, home = env
    other = base / "other"
    other.mkdir()
    assert _names(monkeypatch, str(home)) != _names(monkeypatch, str(other))


def test_the_default_home_has_the_fixed_names(env, monkeypatch):
    # however it is reached: unset, or spelled out in VBOX_USER_HOME
    default = paths.default_home()
    if os.geteuid() != 0:
        monkeypatch.setenv("HOME", str(Path(default).parents[1]))  # HOME as the account has it
    names = {_names(monkeypatch, None), _names(monkeypatch, default)}
    assert len(names) == 1
    assert [os.path.basename(n) for n in names.pop()] == ["vboxsvc.sock", "vboxsvc.spawn.lock", "vboxsvc.pid"]


def test_a_scratch_home_is_not_the_default(env, monkeypatch):
    base, _ = env
    monkeypatch.setenv("HOME", str(base))
    monkeypatch.setattr("os.geteuid", lambda: 1000)  # $HOME counts for ordinary users only
    assert paths.canonical_home() == str(base / ".config" / "VirtualBox")
    assert os.path.basename(paths.socket_path()) != "vboxsvc.sock"
