"""IMedium over vmm.storage, and VirtualBox's media registry rules."""

from __future__ import annotations

import os

import pytest

from settings.machine_file import MachineFile
from settings.main_file import MainFile
from vboxsvc.api import (
    AccessMode,
    CleanupMode,
    DeviceType,
    LockType,
    MediumState,
    MediumType,
    MediumVariant,
    StorageBus,
    VBoxError,
)
from vboxsvc.api import errors as rc

MB = 1024 * 1024


def _create(vbox, path, size=64 * MB, variant=(MediumVariant.Standard,)):
    m = vbox.create_medium("VDI", str(path), AccessMode.ReadWrite, DeviceType.HardDisk)
    assert m.state == MediumState.NotCreated
    p = m.create_base_storage(size, list(variant))
    p.wait_for_completion(-1)
    assert p.completed and p.result_code == 0, p.error_info and p.error_info.text
    return m


def _global_ids(svc_env):
    reg = MainFile.load(svc_env.home / "VirtualBox.xml").settings.media_registry
    return [str(m.uuid) for m in reg.hard_disks]


def test_create_open_close(vbox, svc_env):
    path = svc_env.vms / "disks" / "a.vdi"
    m = _create(vbox, path)
    assert os.path.exists(path)
    assert m.state == MediumState.Created and m.logical_size == 64 * MB
    assert m.format == "VDI" and m.location == str(path) and m.name == "a.vdi"
    assert m.variant == [MediumVariant.Standard]
    assert m.size < 4 * MB  # dynamic
    assert m.id in [x.id for x in vbox.hard_disks]
    assert m.id in _global_ids(svc_env)  # merely created: lives in VirtualBox.xml
    again = vbox.open_medium(str(path), DeviceType.HardDisk)
    assert again.id == m.id
    with pytest.raises(VBoxError) as e:
        vbox.create_medium("VDI", str(path), AccessMode.ReadWrite, DeviceType.HardDisk)
    assert e.value.result_code == rc.VBOX_E_OBJECT_IN_USE
    mid = m.id
    m.close()
    assert mid not in [x.id for x in vbox.hard_disks] and mid not in _global_ids(svc_env)
    with pytest.raises(VBoxError):  # a closed medium object is gone
        m.state  # noqa: B018
    opened = vbox.open_medium(str(path), DeviceType.HardDisk)
    assert opened.id == mid  # the VDI's own UUID
    opened.close()


def test_fixed_and_errors(vbox, svc_env):
    path = svc_env.vms / "disks" / "fixed.vdi"
    m = _create(vbox, path, 8 * MB, (MediumVariant.Fixed,))
    assert MediumVariant.Fixed in m.variant and m.size >= 8 * MB
    with pytest.raises(VBoxError) as e:
        m.create_base_storage(MB, [])
    assert e.value.result_code == rc.VBOX_E_INVALID_OBJECT_STATE
    with pytest.raises(VBoxError) as e:
        vbox.open_medium(str(svc_env.vms / "none.vdi"), DeviceType.HardDisk)
    assert e.value.result_code == rc.VBOX_E_FILE_ERROR
    with pytest.raises(VBoxError) as e:
        vbox.open_medium("relative.vdi", DeviceType.HardDisk)
    assert "not fully qualified" in e.value.text
    with pytest.raises(VBoxError) as e:
        vbox.create_medium("QCOW2", "/tmp/x.qcow2", AccessMode.ReadWrite, DeviceType.HardDisk)
    assert e.value.result_code == rc.VBOX_E_OBJECT_NOT_FOUND
    p = m.delete_storage()
    p.wait_for_completion(-1)
    assert p.result_code == 0 and not os.path.exists(path)


def test_attach_moves_medium_into_machine_registry(client, vbox, new_vm, svc_env):
    vm = new_vm()
    disk = _create(vbox, svc_env.vms / "disks" / "att.vdi")
    iso = svc_env.vms / "disks" / "boot.iso"
    iso.write_bytes(b"\0" * 4096)
    dvd = vbox.open_medium(str(iso), DeviceType.DVD, AccessMode.ReadOnly)
    s = client.session()
    vm.lock_machine(s, LockType.Write)
    sm = s.machine
    sm.add_storage_controller("SATA", StorageBus.SATA)
    sm.attach_device("SATA", 0, 0, DeviceType.HardDisk, disk)
    sm.attach_device("SATA", 1, 0, DeviceType.DVD, dvd)
    with pytest.raises(VBoxError) as e:
        sm.attach_device("SATA", 2, 0, DeviceType.DVD, disk)
    assert e.value.result_code == rc.E_INVALIDARG
    sm.save_settings()
    s.unlock_machine()
    assert disk.machine_ids == [vm.id]
    assert vm.get_medium("SATA", 0, 0).id == disk.id
    f = MachineFile.load(vm.settings_file_path).settings.media_registry
    assert [str(x.uuid) for x in f.hard_disks] == [disk.id]
    assert [str(x.uuid) for x in f.dvd_images] == [dvd.id]
    assert disk.id not in _global_ids(svc_env)
    with pytest.raises(VBoxError) as e:
        disk.close()
    assert e.value.result_code == rc.VBOX_E_OBJECT_IN_USE
    assert (
        e.value.text
        == f"Medium '{disk.location}' cannot be closed because it is still attached to 1 virtual machines"
    )
    with pytest.raises(VBoxError):
        disk.type = MediumType.Immutable
    media = vm.unregister(CleanupMode.DetachAllReturnHardDisksOnly)
    assert [x.id for x in media] == [disk.id]
    disk_id, disk_path, vbox_path = disk.id, disk.location, vm.settings_file_path
    p = vm.delete_config(media)
    p.wait_for_completion(-1)
    assert p.result_code == 0, p.error_info and p.error_info.text
    assert not os.path.exists(disk_path) and not os.path.exists(vbox_path)
    assert disk_id not in [x.id for x in vbox.hard_disks]


def test_diff_clone_resize_compact(vbox, svc_env):
    base = _create(vbox, svc_env.vms / "chain" / "base.vdi", 16 * MB)
    diff = vbox.create_medium("VDI", str(svc_env.vms / "chain" / "diff.vdi"), AccessMode.ReadWrite,
                              DeviceType.HardDisk)
    p = base.create_diff_storage(diff, [MediumVariant.Diff])
    p.wait_for_completion(-1)
    assert p.result_code == 0, p.error_info and p.error_info.text
    assert diff.parent == base and [c.id for c in base.children] == [diff.id]
    assert diff.base == base and MediumVariant.Diff in diff.variant
    assert diff.id not in [x.id for x in vbox.hard_disks]  # only bases are listed
    with pytest.raises(VBoxError) as e:
        base.close()
    assert e.value.text == f"Cannot close medium '{base.location}' because it has 1 child media"
    clone = vbox.create_medium("VDI", str(svc_env.vms / "chain" / "clone.vdi"), AccessMode.ReadWrite,
                               DeviceType.HardDisk)
    p = diff.clone_to(clone, [MediumVariant.Standard], None)
    p.wait_for_completion(-1)
    assert p.result_code == 0, p.error_info and p.error_info.text
    assert clone.state == MediumState.Created and clone.parent is None and clone.logical_size == 16 * MB
    p = clone.resize(32 * MB)
    p.wait_for_completion(-1)
    assert p.result_code == 0 and clone.logical_size == 32 * MB
    with pytest.raises(VBoxError) as e:
        clone.resize(MB)
    assert e.value.result_code == rc.VBOX_E_NOT_SUPPORTED
    p = clone.compact()
    p.wait_for_completion(-1)
    assert p.result_code == 0
    diff_path = diff.location
    p = diff.merge_to(base)
    p.wait_for_completion(-1)
    assert p.result_code == 0, p.error_info and p.error_info.text
    assert base.children == [] and not os.path.exists(diff_path)
    for m in (clone, base):
        m.close()


def test_progress_wait_timeout_and_error(vbox, svc_env):
    target = svc_env.vms / "exists.vdi"
    target.write_bytes(b"x")
    m = vbox.create_medium("VDI", str(target), AccessMode.ReadWrite, DeviceType.HardDisk)
    with pytest.raises(VBoxError) as e:
        m.create_base_storage(MB, [])
    assert e.value.result_code == rc.VBOX_E_FILE_ERROR
    assert "Could not create the medium storage unit" in e.value.text
    m2 = vbox.create_medium("VDI", str(svc_env.vms / "p" / "ok.vdi"), AccessMode.ReadWrite,
                            DeviceType.HardDisk)
    p = m2.create_base_storage(MB, [])
    p.wait_for_completion(0)  # returns at once
    p.wait_for_completion(-1)
    assert p.completed and p.percent == 100 and p.operation_count == 1
    assert vbox.find_progress_by_id(p.id).id == p.id
    with pytest.raises(VBoxError):
        p.cancel()  # not cancelable
    m2.close()


def test_set_ids_rewrites_the_image(vbox, svc_env):
    from vmm.storage import image_info
    m = _create(vbox, svc_env.vms / "ids" / "disk.vdi", MB)
    old = m.id
    new = "0b0d4c5e-1f2a-4b3c-8d9e-0123456789ab"
    m.set_ids(True, new, False, "")
    assert m.id == new and image_info(m.location).uuid == new
    assert new in [x.id for x in vbox.hard_disks] and old not in [x.id for x in vbox.hard_disks]
    m.set_ids(True, "", False, "")
    assert m.id not in (old, new) and image_info(m.location).uuid == m.id
    with pytest.raises(VBoxError) as e:
        m.set_ids(True, "not-a-uuid", False, "")
    assert e.value.result_code == rc.E_INVALIDARG
    m.close()
