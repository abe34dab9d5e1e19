"""Offline snapshots in the service: take, restore, delete with differencing-image merges, edit,
find, the .vbox they leave behind, and the events they fire."""

from __future__ import annotations

import os
import uuid

import pytest
from lxml import etree

from settings.machine_file import MachineFile
from vboxsvc.api import VBoxError
from vboxsvc.api import errors as rc
from vboxsvc.api.enums import MachineState, VBoxEventType

from .snapshot_env import Env

NS = {"v": "http://www.virtualbox.org/"}
BLOCK = 1 << 20


@pytest.fixture
def env(tmp_path, monkeypatch):
    return Env(tmp_path, monkeypatch)


def write(env, path: str, offset: int, data: bytes) -> None:
    from vmm.storage import open_image
    img = open_image(path, parent_resolver=env.vbox.media.resolver())
    try:
        img.write_at(offset, data)
        img.flush()
    finally:
        img.close()


def read(env, path: str, offset: int, n: int) -> bytes:
    from vmm.storage import open_image
    img = open_image(path, read_only=True, parent_resolver=env.vbox.media.resolver())
    try:
        return img.read_at(offset, n)
    finally:
        img.close()


def take(env, m, name, desc=""):
    s = env.locked(m)
    sid, progress = s.machine.take_snapshot(name, desc, True)
    env.ok(progress)
    s.unlock_machine()
    return sid


def restore(env, m, name):
    s = env.locked(m)
    env.ok(s.machine.restore_snapshot(s.machine.find_snapshot(name)))
    s.unlock_machine()


def delete(env, m, name):
    s = env.locked(m)
    sid = s.machine.find_snapshot(name).id
    err = env.wait(s.machine.delete_snapshot(sid))
    s.unlock_machine()
    return err


def vbox_xml(m):
    return etree.parse(m.settings_file_path).getroot()


def test_take_creates_diff_and_tree(env):
    m = env.machine("vm1")
    base = env.disk_paths(m)[0]
    sid = take(env, m, "first", "the first one")
    disk = env.disk_paths(m)[0]
    folder = os.path.join(os.path.dirname(m.settings_file_path), "Snapshots")
    assert disk == os.path.join(folder, "{" + os.path.basename(disk)[1:-5] + "}.vdi")
    assert os.path.isfile(disk)
    med = env.vbox.media.by_id[os.path.basename(disk)[1:-5]]
    assert med.parent.location == base
    from vmm.storage import image_info
    assert image_info(disk).parent_uuid == med.parent.id
    assert m.snapshot_count == 1
    assert m.current_snapshot.id == sid
    assert m.current_state_modified is False
    snap = m.find_snapshot("first")
    assert (snap.name, snap.description, snap.online, snap.parent) == ("first", "the first one", False, None)
    # the snapshot's machine sees the old disk, read-only
    assert env.disk_paths(snap.machine) == [base]
    with pytest.raises(VBoxError):
        snap.machine.memory_size = 256
    root = vbox_xml(m)
    mach = root.find("v:Machine", NS)
    assert mach.get("currentSnapshot") == "{" + sid + "}"
    assert mach.get("currentStateModified") == "false"
    keys = list(mach.attrib)
    assert keys.index("currentSnapshot") < keys.index("snapshotFolder") < keys.index("currentStateModified")
    kids = [c.tag.split("}")[1] for c in mach]
    assert kids.index("Snapshot") < kids.index("Hardware")
    se = mach.find("v:Snapshot", NS)
    assert se.get("name") == "first" and se.find("v:Description", NS).text == "the first one"
    assert se.get("timeStamp").endswith("Z") and "stateFile" not in se.attrib
    # the diff is nested under the base in the machine's media registry, relative to the machine folder
    hd = mach.find("v:MediaRegistry/v:HardDisks/v:HardDisk", NS)
    child = hd.find("v:HardDisk", NS)
    assert child.get("location") == f"Snapshots/{{{med.id}}}.vdi" and "type" not in child.attrib
    # reloading the file gives the same tree
    s = MachineFile.load(m.settings_file_path).settings
    assert str(s.current_snapshot) == sid and s.snapshots()[0].name == "first"
    types = [t for t, f in env.events.fired if t in (VBoxEventType.OnSnapshotTaken,)]
    assert types == [VBoxEventType.OnSnapshotTaken]
    assert m.state == MachineState.PoweredOff


def test_restore_brings_back_disk_content(env):
    m = env.machine("vm2")
    write(env, env.disk_paths(m)[0], 0, b"A" * 512)
    take(env, m, "s1")
    write(env, env.disk_paths(m)[0], 0, b"B" * 512)
    take(env, m, "s2")
    write(env, env.disk_paths(m)[0], 0, b"C" * 512)
    before = env.disk_paths(m)[0]
    restore(env, m, "s1")
    assert read(env, env.disk_paths(m)[0], 0, 512) == b"A" * 512
    assert not os.path.exists(before), "the old current state's diff is deleted"
    assert m.current_snapshot.name == "s1" and m.current_state_modified is False
    assert [t for t, f in env.events.fired if t == VBoxEventType.OnSnapshotRestored]
    restore(env, m, "s2")
    assert read(env, env.disk_paths(m)[0], 0, 512) == b"B" * 512
    # a new snapshot after restoring s1 branches off s1
    restore(env, m, "s1")
    take(env, m, "s1b")
    s1 = m.find_snapshot("s1")
    assert sorted(c.name for c in s1.children) == ["s1b", "s2"]
    assert s1.get_children_count() == 2


def test_delete_middle_snapshot_keeps_later_states(env):
    m = env.machine("vm3")
    write(env, env.disk_paths(m)[0], 0, b"1" * 512)
    take(env, m, "s1")
    write(env, env.disk_paths(m)[0], BLOCK, b"2" * 512)
    take(env, m, "s2")
    write(env, env.disk_paths(m)[0], 2 * BLOCK, b"3" * 512)
    take(env, m, "s3")
    write(env, env.disk_paths(m)[0], 0, b"4" * 512)
    s2_disks = env.disk_paths(m.find_snapshot("s2").machine)
    assert delete(env, m, "s2") is None
    assert not os.path.exists(s2_disks[0]), "s2's diff was merged forward into its child"
    names = [m.find_snapshot("").name] + [c.name for c in m.find_snapshot("").children]
    assert names == ["s1", "s3"]
    s3 = env.disk_paths(m.find_snapshot("s3").machine)[0]
    assert read(env, s3, 0, 512) == b"1" * 512
    assert read(env, s3, BLOCK, 512) == b"2" * 512
    assert read(env, s3, 2 * BLOCK, 512) == b"3" * 512
    cur = env.disk_paths(m)[0]
    assert read(env, cur, 0, 512) == b"4" * 512 and read(env, cur, BLOCK, 512) == b"2" * 512
    # deleting the root merges its child back into the base disk
    base = env.disk_paths(m.find_snapshot("s1").machine)[0]
    assert delete(env, m, "s1") is None
    assert os.path.exists(base)
    assert env.disk_paths(m.find_snapshot("s3").machine)[0] == base
    assert read(env, base, 2 * BLOCK, 512) == b"3" * 512
    assert delete(env, m, "s3") is None
    assert m.snapshot_count == 0 and m.current_snapshot is None
    assert env.disk_paths(m) == [base]
    assert read(env, base, 0, 512) == b"4" * 512 and read(env, base, 2 * BLOCK, 512) == b"3" * 512
    mach = vbox_xml(m).find("v:Machine", NS)
    assert mach.find("v:Snapshot", NS) is None and "currentSnapshot" not in mach.attrib
    assert mach.find("v:MediaRegistry/v:HardDisks/v:HardDisk/v:HardDisk", NS) is None
    assert os.listdir(os.path.dirname(m.settings_file_path) + "/Snapshots") == []
    assert len([t for t, f in env.events.fired if t == VBoxEventType.OnSnapshotDeleted]) == 3


def test_delete_refuses_two_children(env):
    m = env.machine("vm4")
    take(env, m, "s1")
    take(env, m, "s2")
    restore(env, m, "s1")
    take(env, m, "s3")
    with pytest.raises(VBoxError) as e:
        delete(env, m, "s1")
    assert e.value.text == "Snapshot 's1' of the machine 'vm4' has more than one child snapshot (2)"
    env.vbox.find_core("vm4").direct.unlock_machine()
    assert m.snapshot_count == 3


def test_find_edit_and_errors(env):
    m = env.machine("vm5", disks=0)
    with pytest.raises(VBoxError) as e:
        m.find_snapshot("x")
    assert e.value.text == "This machine does not have any snapshots"
    sid = take(env, m, "one")
    assert m.find_snapshot(sid).name == "one" and m.find_snapshot("{" + sid + "}").name == "one"
    with pytest.raises(VBoxError) as e:
        m.find_snapshot("two")
    assert (e.value.text == "Could not find a snapshot named 'two'"
            and e.value.result_code == rc.VBOX_E_OBJECT_NOT_FOUND)
    u = str(uuid.uuid4())
    with pytest.raises(VBoxError) as e:
        m.find_snapshot(u)
    assert e.value.text == f"Could not find a snapshot with UUID {{{u}}}"
    snap = m.find_snapshot("one")
    snap.name = "renamed"
    snap.description = "line1\nline2"
    s = MachineFile.load(m.settings_file_path).settings.snapshots()[0]
    assert (s.name, s.description) == ("renamed", "line1\nline2")
    assert [t for t, f in env.events.fired if t == VBoxEventType.OnSnapshotChanged]
    with pytest.raises(VBoxError):
        m.take_snapshot("no session")   # the registered machine is immutable
    s = env.locked(m)
    with pytest.raises(VBoxError) as e:
        s.machine.take_snapshot("", "", True)
    s.unlock_machine()


def test_saved_machine_snapshot_keeps_state(env):
    m = env.machine("vm6", disks=0)
    core = env.vbox.find_core("vm6")
    folder = os.path.join(os.path.dirname(m.settings_file_path), "Snapshots")
    os.makedirs(folder, exist_ok=True)
    state = os.path.join(folder, "2026-01-01T00-00-00-000000000Z.sav")
    with open(state, "wb") as f:
        f.write(b"state-1")
    core.data.state_file = state
    core.save()
    core.state = MachineState.Saved
    take(env, m, "saved")
    snap = m.find_snapshot("saved")
    assert snap.online is True and snap.machine.state == MachineState.Saved
    copy = snap.machine.state_file_path
    assert copy != state and open(copy, "rb").read() == b"state-1"
    se = vbox_xml(m).find("v:Machine/v:Snapshot", NS)
    assert se.get("stateFile") == "Snapshots/" + os.path.basename(copy)
    # discard the machine's state, then restoring the snapshot brings a Saved machine back
    s = env.locked(m)
    s.machine.discard_saved_state(True)
    s.unlock_machine()
    assert m.state == MachineState.PoweredOff and not os.path.exists(state)
    restore(env, m, "saved")
    assert m.state == MachineState.Saved
    restored = m.state_file_path
    assert restored not in (copy, state) and open(restored, "rb").read() == b"state-1"
    assert os.path.exists(copy)
    assert delete(env, m, "saved") is None
    assert not os.path.exists(copy) and os.path.exists(restored)


def test_saving_changed_settings_marks_current_state_modified(env):
    m = env.machine("vm7", disks=0)
    take(env, m, "s")
    assert m.current_state_modified is False
    s = env.locked(m)
    s.machine.save_settings()                 # nothing changed: still the snapshot's state
    assert m.current_state_modified is False
    s.machine.memory_size = 512
    s.machine.save_settings()
    s.unlock_machine()
    assert m.current_state_modified is True
    assert "currentStateModified" not in vbox_xml(m).find("v:Machine", NS).attrib
    take(env, m, "t")
    assert m.current_state_modified is False and m.current_snapshot.parent.name == "s"


def test_unregister_and_delete_with_snapshots(env):
    from vboxsvc.api.enums import CleanupMode
    m = env.machine("vm8")
    core = env.vbox.find_core("vm8")
    folder = os.path.dirname(m.settings_file_path)
    os.makedirs(os.path.join(folder, "Snapshots"), exist_ok=True)
    state = os.path.join(folder, "Snapshots", "2026-01-01T00-00-00-000000000Z.sav")
    open(state, "wb").write(b"s")
    core.data.state_file = state
    core.save()
    core.state = MachineState.Saved
    take(env, m, "a")
    take(env, m, "b")
    snap_states = [s.state_file for s in core.data.snapshots()]
    assert all(os.path.exists(f) for f in snap_states)
    with pytest.raises(VBoxError, match="because it has 2 snapshots"):
        m.unregister(CleanupMode.UnregisterOnly)
    media = m.unregister(CleanupMode.DetachAllReturnHardDisksOnly)
    assert len(media) == 3
    def depth(md):
        return 0 if md.parent is None else 1 + depth(md.parent)
    depths = [depth(md) for md in media]
    assert depths == [2, 1, 0], "children come before their parents"
    env.ok(m.delete_config(media))
    assert not os.path.exists(folder), os.listdir(folder) if os.path.exists(folder) else ""


def test_restore_branches_then_delete_middle(env):
    m = env.machine("vm9")
    for word in (b"one", b"two", b"three"):
        write(env, env.disk_paths(m)[0], 0, word.ljust(8, b"."))
        take(env, m, word.decode())
    write(env, env.disk_paths(m)[0], 0, b"four....")
    restore(env, m, "two")
    assert read(env, env.disk_paths(m)[0], 0, 8) == b"two....."
    restore(env, m, "three")            # the branch off "two" is dropped with its diff
    two_disk = env.disk_paths(m.find_snapshot("two").machine)[0]
    assert len(env.vbox.media.by_id[os.path.basename(two_disk)[1:-5]].children) == 1
    assert delete(env, m, "two") is None
    for name, word in (("three", b"three..."), ("one", b"one.....")):
        restore(env, m, name)
        assert read(env, env.disk_paths(m)[0], 0, 8) == word
    folder = os.path.join(os.path.dirname(m.settings_file_path), "Snapshots")
    registered = {os.path.basename(x.location) for x in env.vbox.media.by_id.values() if x.parent is not None}
    assert set(os.listdir(folder)) == registered, "no differencing image is left behind unregistered"
