"""Where VirtualBox keeps things: user home, machine folder, machine file names."""

from __future__ import annotations

import os
import stat
import uuid

import pytest

from settings import paths
from settings.errors import SettingsError


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("VBOX_USER_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("VBOX_USER_LOGHOME", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # a normal user: $HOME counts
    return h


def test_user_home_from_env_for_normal_users(home):
    assert paths.user_home_dir() == home


def test_root_home_comes_from_account_database(home, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    import pwd
    assert paths.user_home_dir() == __import__("pathlib").Path(pwd.getpwuid(0).pw_dir)


def test_vbox_user_home_env_is_made_absolute(home, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VBOX_USER_HOME", "rel/vbox")
    p = paths.vbox_user_home()
    assert p == tmp_path / "rel" / "vbox" and p.is_dir()


def test_legacy_dot_virtualbox_wins_when_it_exists(home):
    (home / ".VirtualBox").mkdir()
    assert paths.vbox_user_home() == home / ".VirtualBox"
    assert not (home / ".config").exists()


def test_xdg_default_created_0700(home):
    p = paths.vbox_user_home()
    assert p == home / ".config" / "VirtualBox"
    assert stat.S_IMODE(p.stat().st_mode) == 0o700


def test_xdg_config_home_respected(home, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert paths.vbox_user_home(create=False) == tmp_path / "xdg" / "VirtualBox"
    assert not (tmp_path / "xdg").exists()


def test_default_machine_folder(home):
    assert paths.default_machine_folder(None) == home / "VirtualBox VMs"
    assert paths.default_machine_folder("") == home / "VirtualBox VMs"
    assert paths.default_machine_folder("Machines") == home / "VirtualBox VMs"
    assert str(paths.default_machine_folder("/data/vms")) == "/data/vms"


def test_machine_folder_must_be_absolute():
    with pytest.raises(SettingsError) as e:
        paths.validate_machine_folder("vms")
    assert str(e.value) == "Given default machine folder 'vms' is not fully qualified"
    assert str(paths.validate_machine_folder("/vms")) == "/vms"


@pytest.mark.parametrize("name,expected", [
    ("plain", "plain"), ("a/b\\c:d*e", "a_b_c_d_e"), (".hidden", "_hidden"), ("-dash", "_dash"),
    ("dot.", "dot_"), ("  spaced  ", "__spaced__"), ("Zürich (2)", "Zürich (2)"),
    ("emoji\U0001F600", "emoji_"),
    ("tab\there", "tab_here")])
def test_sanitise_name(name, expected):
    assert paths.sanitise_name(name) == expected


def test_compose_machine_filename(home):
    assert paths.compose_machine_filename("vm1") == home / "VirtualBox VMs" / "vm1" / "vm1.vbox"
    assert paths.compose_machine_filename("a/b", group="/web/prod", base_folder="/vms") == \
        __import__("pathlib").Path("/vms/web/prod/a_b/a_b.vbox")
    u = uuid.UUID("9c7e3f2a-1b4d-4e8f-a2c6-3d5e7f9a1b2c")
    p = paths.compose_machine_filename("vm", default_folder="/d", uuid=u, directory_includes_uuid=True)
    assert str(p) == f"/d/vm ({u})/vm.vbox"
    with pytest.raises(SettingsError, match="Machine name is invalid, must not be empty"):
        paths.compose_machine_filename("")
    with pytest.raises(SettingsError):
        paths.compose_machine_filename("vm", base_folder="relative")


def test_machine_subfolders(home, monkeypatch):
    f = "/vms/vm1/vm1.vbox"
    assert str(paths.machine_folder(f)) == "/vms/vm1"
    assert str(paths.log_folder(f)) == "/vms/vm1/Logs"
    assert str(paths.snapshot_folder(f)) == "/vms/vm1/Snapshots"
    assert str(paths.snapshot_folder(f, "snaps")) == "/vms/vm1/snaps"
    assert str(paths.snapshot_folder(f, "/fast/snaps")) == "/fast/snaps"
    monkeypatch.setenv("VBOX_USER_LOGHOME", "/logs")
    assert str(paths.log_folder(f)) == "/logs/vm1"


def test_locations_relative_inside_owner_folder():
    assert paths.relative_location("/vms/a", "/vms/a/disk.vdi") == "disk.vdi"
    assert paths.relative_location("/vms/a", "/vms/a/Snapshots/{x}.vdi") == "Snapshots/{x}.vdi"
    assert paths.relative_location("/vms/a", "/isos/x.iso") == "/isos/x.iso"
    assert str(paths.resolve_location("/vms/a", "disk.vdi")) == "/vms/a/disk.vdi"
    assert str(paths.resolve_location("/vms/a", "/isos/x.iso")) == "/isos/x.iso"


def test_machine_file_names():
    from datetime import UTC, datetime
    when = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert paths.state_file_name(when) == "2024-05-01T10-00-00-123456000Z.sav"
    assert paths.diff_image_name("9C7E3F2A-1B4D-4E8F-A2C6-3D5E7F9A1B2C") == \
        "{9c7e3f2a-1b4d-4e8f-a2c6-3d5e7f9a1b2c}.vdi"
    assert str(paths.nvram_file_name("/vms/a/a.vbox")) == "/vms/a/a.nvram"
