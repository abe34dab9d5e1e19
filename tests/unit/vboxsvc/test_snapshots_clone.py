"""IMachine::cloneTo: full clones of the current state or a snapshot, linked clones, all states,
new identities unless kept."""

from __future__ import annotations

import os

import pytest

from settings.machine_file import MachineFile
from vboxsvc.api import VBoxError
from vboxsvc.api.enums import CloneMode, CloneOptions, MachineState
from vboxsvc.server.virtualbox import VirtualBox

from .snapshot_env import Env
from .test_snapshots import read, take, write


@pytest.fixture
def env(tmp_path, monkeypatch):
    return Env(tmp_path, monkeypatch)


def clone(env, src, name, mode=CloneMode.MachineState, options=(), register=True):
    target = env.vbox.create_machine("", name, os_type_id="Linux_64")
    err = env.wait(src.clone_to(target, mode, list(options)))
    if err is not None:
        raise AssertionError(err.text)
    if register:
        env.vbox.register_machine(target)
    return target


def macs(m) -> list[str]:
    return [n.mac for n in m._d.hardware.network_adapters]


def test_full_clone_of_current_state(env):
    m = env.machine("src", disks=2)
    write(env, env.disk_paths(m)[0], 0, b"x" * 512)
    take(env, m, "s1")
    write(env, env.disk_paths(m)[0], 512, b"y" * 512)
    c = clone(env, m, "src Clone")
    folder = os.path.dirname(c.settings_file_path)
    disks = env.disk_paths(c)
    assert disks == [os.path.join(folder, "src Clone-disk1.vdi"), os.path.join(folder, "src Clone-disk2.vdi")]
    assert read(env, disks[0], 0, 1024) == b"x" * 512 + b"y" * 512
    meds = [env.vbox.media.by_id[str(d.medium)] for ctl in c._d.hardware.storage_controllers
            for d in ctl.devices]
    assert all(x.parent is None for x in meds), "disks are flattened"
    assert c.snapshot_count == 0 and c.id != m.id
    assert set(macs(c)).isdisjoint(macs(m))
    assert c.state == MachineState.PoweredOff
    s = MachineFile.load(c.settings_file_path).settings
    assert s.name == "src Clone" and len(s.media_registry.hard_disks) == 2
    # the source is untouched
    assert m.snapshot_count == 1 and read(env, env.disk_paths(m)[0], 512, 512) == b"y" * 512


def test_clone_options_keep_macs_and_names(env):
    m = env.machine("keep")
    c = clone(env, m, "kept", options=[CloneOptions.KeepAllMACs, CloneOptions.KeepDiskNames])
    assert macs(c) == macs(m)
    assert os.path.basename(env.disk_paths(c)[0]) == "keep-0.vdi"
    with pytest.raises(VBoxError, match="Linked clone can only be created from a snapshot"):
        clone(env, m, "bad", options=[CloneOptions.Link])


def test_linked_clone_from_snapshot_diverges(env):
    m = env.machine("base")
    write(env, env.disk_paths(m)[0], 0, b"S" * 512)
    take(env, m, "golden")
    write(env, env.disk_paths(m)[0], 0, b"T" * 512)
    snap_disk = env.disk_paths(m.find_snapshot("golden").machine)[0]
    c = clone(env, m.find_snapshot("golden").machine, "linked", options=[CloneOptions.Link])
    disk = env.disk_paths(c)[0]
    assert disk.startswith(os.path.join(os.path.dirname(c.settings_file_path), "Snapshots", "{"))
    assert env.vbox.media.by_id[os.path.basename(disk)[1:-5]].parent.location == snap_disk
    assert read(env, disk, 0, 512) == b"S" * 512
    write(env, disk, 0, b"L" * 512)
    assert read(env, env.disk_paths(m)[0], 0, 512) == b"T" * 512
    assert read(env, snap_disk, 0, 512) == b"S" * 512
    # a fresh service finds the linked clone's chain through both registries
    home = env.vbox.home
    vbox2 = VirtualBox(home)
    c2 = vbox2.find_machine("linked")
    dev = c2._d.hardware.storage_controllers[0].devices[0]
    med = vbox2.media.by_id[str(dev.medium)]
    assert med.location == disk and med.parent.location == snap_disk
    assert med.registry == c2.id and med.parent.registry == vbox2.find_machine("base").id
    src_file = MachineFile.load(m.settings_file_path).settings
    assert all(x.location != disk for x in src_file.media_registry.all_media())


def test_all_states_clone_keeps_tree(env):
    m = env.machine("tree")
    write(env, env.disk_paths(m)[0], 0, b"1" * 512)
    take(env, m, "a")
    write(env, env.disk_paths(m)[0], 0, b"2" * 512)
    take(env, m, "b")
    write(env, env.disk_paths(m)[0], 0, b"3" * 512)
    c = clone(env, m, "tree2", mode=CloneMode.AllStates)
    assert c.snapshot_count == 2 and c.current_snapshot.name == "b"
    assert m.find_snapshot("a").id == c.find_snapshot("a").id   # snapshot ids stay, media get new ones
    got = [read(env, env.disk_paths(x)[0], 0, 512)[:1] for x in
           (c.find_snapshot("a").machine, c.find_snapshot("b").machine, c)]
    assert got == [b"1", b"2", b"3"]
    src_ids = {d for d in env.vbox.media.by_id if env.vbox.media.by_id[d].registry == m.id}
    clone_ids = {d for d in env.vbox.media.by_id if env.vbox.media.by_id[d].registry == c.id}
    assert len(clone_ids) == 3 and not src_ids & clone_ids
    vbox2 = VirtualBox(env.vbox.home)
    c2 = vbox2.find_machine("tree2")
    assert read(env, env.disk_paths(c2)[0], 0, 1)[:1] == b"3"


def test_clone_refuses_registered_target(env):
    m = env.machine("one", disks=0)
    other = env.machine("two", disks=0)
    with pytest.raises(VBoxError, match="new, unregistered machine"):
        m.clone_to(other, CloneMode.MachineState, [])


def test_clone_from_snapshot_with_children_gets_fresh_current_disks(env):
    m = env.machine("sub")
    write(env, env.disk_paths(m)[0], 0, b"a" * 512)
    take(env, m, "a")
    write(env, env.disk_paths(m)[0], 0, b"b" * 512)
    take(env, m, "b")
    c = clone(env, m.find_snapshot("a").machine, "sub2", mode=CloneMode.MachineAndChildStates)
    assert c.snapshot_count == 2 and c.current_snapshot.name == "a"
    cur = env.disk_paths(c)[0]
    frozen = env.disk_paths(c.find_snapshot("a").machine)[0]
    assert cur != frozen, "the current state never writes into a snapshot's disk"
    assert env.vbox.media.by_id[os.path.basename(cur)[1:-5]].parent.location == frozen
    assert read(env, cur, 0, 512) == b"a" * 512
    write(env, cur, 0, b"c" * 512)
    assert read(env, frozen, 0, 512) == b"a" * 512
    assert read(env, env.disk_paths(c.find_snapshot("b").machine)[0], 0, 512) == b"b" * 512
    vbox2 = VirtualBox(env.vbox.home)
    assert read(env, env.disk_paths(vbox2.find_machine("sub2"))[0], 0, 512) == b"c" * 512
