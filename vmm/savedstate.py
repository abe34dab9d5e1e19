"""The whole VM into a saved-state file and back (what VirtualBox's VMM does with SSM on
`controlvm savestate` and when a Saved machine starts).

Saving pauses the vCPU through EM and, on the vCPU thread (so no instruction runs and no device
is touched meanwhile), flushes the disks and writes one SSM file: a header whose meta names the
format, the RAM size, the guest clock and every unit with the class of its state; then the vCPU
registers, each device's state value object, and guest RAM streamed with cheap zero pages.
Restoring goes into a freshly built machine before it starts: the file is checked against the
machine (format, RAM size, the same devices with the same state classes) before anything is
loaded, then the clock, RAM, vCPU and devices are set. Any mismatch or corruption is a
SavedStateError with a clear text, so the caller can keep the machine Saved.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

from vmm.engine import CpuState
from vmm.ssm import SavedStateError, SavedStateReader, SavedStateWriter, decode_state, encode_state

FORMAT = "vboxpy-vm"
FORMAT_VERSION = 1
UNIT_VERSION = 1
CPU_UNIT = "cpu"
RAM_UNIT = "pgm"

__all__ = ["SavedStateError", "SaveResult", "save_state", "restore_state", "check_state_file", "state_units"]


@dataclass
class SaveResult:
    path: str
    size: int          # bytes in the state file
    seconds: float     # time the vCPU was held for writing


def state_units(machine) -> list[tuple[str, object]]:
    """(unit name, device) for every device with saved state: the machine's own list when it
    offers one (`state_units()`), else its stateful legacy devices plus its storage controllers."""
    own = getattr(machine, "state_units", None)
    if callable(own):
        return list(own())
    units = list(getattr(machine, "_stateful", {}).items())
    names = {name for name, _ in units}
    for pc in getattr(machine, "storage", []):
        if f"storage/{pc.name}" not in names:
            units.append((f"storage/{pc.name}", pc.device))
    return units


def _class_name(obj) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


# ------------------------------------------------------------------ saving

def save_state(machine, path: str | os.PathLike, extra_meta: dict | None = None) -> SaveResult:
    """Pause the machine (it stays paused) and write its whole state to `path`."""
    machine.pause().result()
    return machine.em.call(lambda: write_state(machine, path, extra_meta)).result()


def write_state(machine, path: str | os.PathLike, extra_meta: dict | None = None) -> SaveResult:
    """Write the state of a machine whose vCPU does not run (call on the vCPU thread or before start)."""
    t0 = time.perf_counter()
    for pc in getattr(machine, "storage", []):
        for img in pc.images:
            img.flush()
    units = state_units(machine)
    states = [(name, dev.get_state()) for name, dev in units]
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "ram": machine.memory.size,
            "clock_ns": machine.clock.now_ns(), "engine": getattr(machine, "engine_name", ""),
            "cpu": _class_name(CpuState()), "units": {name: _class_name(st) for name, st in states},
            "saved_at": time.time()}
    meta.update(extra_meta or {})
    try:
        with SavedStateWriter(path, meta) as w:
            w.add_state(CPU_UNIT, 0, UNIT_VERSION, machine.vcpu.get_state())
            for name, st in states:
                w.add_state(name, 0, UNIT_VERSION, st)
            w.add_ram(machine.memory, RAM_UNIT, 0, UNIT_VERSION)
    except OSError as e:
        raise SavedStateError(f"cannot write the saved state file '{os.fspath(path)}': {e.strerror}") from e
    size = os.path.getsize(path)
    return SaveResult(os.fspath(path), size, time.perf_counter() - t0)


# ------------------------------------------------------------------ restoring

def check_state_file(path: str | os.PathLike, machine=None) -> dict:
    """Open and verify a state file (structure, format, and when given, fit to `machine`); its meta."""
    with SavedStateReader(path) as r:
        _check(r, machine)
        return dict(r.meta)


def _check(r: SavedStateReader, machine) -> None:
    meta = r.meta
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SavedStateError(f"'{r.path}' is not a saved state of a vboxpy VM")
    if meta.get("version") != FORMAT_VERSION:
        raise SavedStateError(f"saved state '{r.path}' has format version {meta.get('version')}, this VMM "
                              f"reads version {FORMAT_VERSION}")
    for u in r.units:
        if u.version > UNIT_VERSION:
            raise SavedStateError(f"saved state unit '{u.name}' has version {u.version}, newer than this VMM "
                                  f"supports ({UNIT_VERSION})")
    if machine is None:
        return
    if meta.get("ram") != machine.memory.size:
        raise SavedStateError(f"saved state '{r.path}' is for {meta.get('ram', 0) >> 20} MiB of "
                              f"RAM, the VM has "
                              f"{machine.memory.size >> 20} MiB")
    saved = meta.get("units") or {}
    have = {name: _class_name(dev.get_state()) for name, dev in state_units(machine)}
    if set(saved) != set(have):
        missing, extra = sorted(set(have) - set(saved)), sorted(set(saved) - set(have))
        raise SavedStateError(f"saved state '{r.path}' does not match the VM's devices"
                              + (f"; not in the file: {', '.join(missing)}" if missing else "")
                              + (f"; unknown to the VM: {', '.join(extra)}" if extra else ""))
    for name, cls in have.items():
        if saved[name] != cls:
            raise SavedStateError(f"saved state of device '{name}' is a {saved[name]}, the VM's device keeps "
                                  f"a {cls}")
    names = {u.name for u in r.units}
    for name in [CPU_UNIT, RAM_UNIT, *have]:
        if name not in names:
            raise SavedStateError(f"saved state '{r.path}' has no unit '{name}'")


def restore_state(machine, path: str | os.PathLike) -> dict:
    """Load a state file into a machine that is built but not started; returns the file's meta."""
    with SavedStateReader(path) as r:
        _check(r, machine)
        units = state_units(machine)
        decoded = [(dev, _decode_like(dev.get_state(), r.read_unit(name, 0, UNIT_VERSION)[1]))
                   for name, dev in units]   # every device decodes before anything changes
        cpu = r.read_state(CpuState, CPU_UNIT, 0, UNIT_VERSION)
        clock = machine.clock
        if hasattr(clock, "set_now"):
            clock.set_now(int(r.meta["clock_ns"]))
        r.read_ram(machine.memory, RAM_UNIT, 0)
        machine.vcpu.set_state(cpu)
        for dev, st in decoded:
            try:
                dev.set_state(st)
            except (ValueError, TypeError, KeyError, IndexError) as e:
                raise SavedStateError(
                    f"saved state of {type(dev).__name__} does not fit the device: {e}"
                ) from e
        return dict(r.meta)


def _decode_like(template, data: bytes):
    """Decode a state value object using a live one as the template, so fields typed loosely
    (`object`, e.g. a virtio transport's device state) come back as their real classes."""
    if not dataclasses.is_dataclass(template):
        return decode_state(type(template), data)
    return _fix(template, decode_state(type(template), data))


def _fix(template, obj):
    if not (dataclasses.is_dataclass(template) and dataclasses.is_dataclass(obj)):
        return obj
    for f in dataclasses.fields(obj):
        tv, ov = getattr(template, f.name, None), getattr(obj, f.name)
        if dataclasses.is_dataclass(tv) and isinstance(ov, dict):
            object.__setattr__(obj, f.name, _fix(tv, decode_state(type(tv), encode_state(ov))))
        elif dataclasses.is_dataclass(tv):
            _fix(tv, ov)
        elif isinstance(tv, list) and tv and dataclasses.is_dataclass(tv[0]) and isinstance(ov, list):
            object.__setattr__(obj, f.name, [
                _fix(tv[0], decode_state(type(tv[0]), encode_state(x)) if isinstance(x, dict) else x)
                for x in ov])
    return obj


# ------------------------------------------------------------------ the VM process's side

def console_take_snapshot(machine, state_file: str, disks, pause: bool = True) -> SaveResult:
    """IConsole::takeSnapshotOnline in the VM process: with the vCPU held, write the state into the
    snapshot's file and move every listed disk onto a new differencing image of the open one
    (`disks`: [parent path, diff path, diff uuid] each); the VM runs on afterwards if it ran
    before. A failure switches the disks back and deletes what was made."""
    from vmm.em import EmState
    was_running = machine.em.state is EmState.RUNNING
    machine.pause().result()
    try:
        return machine.em.call(lambda: _snapshot_on_vcpu(machine, state_file, list(disks))).result()
    finally:
        if was_running:
            machine.resume().result()


def _disk_holders(machine):
    """(placed controller, object with `.image`) for every disk of every storage controller."""
    for pc in getattr(machine, "storage", []):
        dev = pc.device
        for port in getattr(dev, "ports", None) or []:
            disk = getattr(port, "disk", None)
            if disk is not None and hasattr(disk, "image"):
                yield pc, disk
        inner = getattr(dev, "device", None)
        for disk in (getattr(inner, "disks", None) or {}).values():
            if hasattr(disk, "image"):
                yield pc, disk


def _snapshot_on_vcpu(machine, state_file: str, disks: list) -> SaveResult:
    from vmm.storage import create_diff_vdi
    result = write_state(machine, state_file)
    switched = []       # (pc, holders, parent image, child image, child path)
    try:
        for item in disks:
            parent_path, diff_path, uid = (str(x) for x in item)
            holders = [(pc, h) for pc, h in _disk_holders(machine)
                       if os.path.abspath(getattr(h.image, "path", "")) == os.path.abspath(parent_path)]
            if not holders:
                raise SavedStateError(f"the VM has no open disk '{parent_path}'")
            parent = holders[0][1].image
            child = create_diff_vdi(diff_path, parent, uuid=uid)
            for _pc, h in holders:
                h.image = child
            pc = holders[0][0]
            i = pc.images.index(parent) if parent in pc.images else len(pc.images)
            pc.images[i:i] = [child]           # closed before its parent at power-off
            switched.append((pc, holders, parent, child, diff_path))
    except BaseException as e:
        for pc, holders, parent, child, path in reversed(switched):
            for _pc, h in holders:
                h.image = parent
            pc.images.remove(child)
            child.close()
            try:
                os.unlink(path)
            except OSError:
                pass
        try:
            os.unlink(state_file)
        except OSError:
            pass
        if isinstance(e, SavedStateError):
            raise
        raise SavedStateError(f"cannot move the disks onto the snapshot's differencing images: {e}") from e
    return result


def console_merge_online(machine, jobs, known) -> dict:
    """IConsole::mergeSnapshotOnline in the VM process: the merges of deleting a snapshot of the
    running machine, done here because this process holds the disk chain open (and locked). With
    the vCPU held, every disk image is flushed and closed, the merges run (`jobs`: [kind, source,
    target, paths to relink] with kind backward = child into parent, forward = parent into child,
    drop = delete), and each disk is reopened (a disk whose file was merged back into its parent
    continues on the parent); `known` ([uuid, path]) finds parents outside the machine's folder.
    Returns {"done": [indices of finished jobs], "error": text or ""}."""
    from vmm.em import EmState
    was_running = machine.em.state is EmState.RUNNING
    machine.pause().result()
    try:
        return machine.em.call(lambda: _merge_on_vcpu(machine, [list(j) for j in jobs],
                                                      {str(u): str(p) for u, p in known})).result()
    finally:
        if was_running:
            machine.resume().result()


def _merge_on_vcpu(machine, jobs: list, known: dict) -> dict:
    from vmm import storage as st

    def resolver(path: str):
        fallback = st.default_parent_resolver(path)
        return lambda uid: known[uid] if uid in known else fallback(uid)

    holders = [(pc, h, os.path.abspath(h.image.path), bool(getattr(h.image, "read_only", False)))
               for pc, h in _disk_holders(machine)]
    for pc in getattr(machine, "storage", []):
        for img in pc.images:
            img.flush()
            img.close()
        pc.images = []
    done, error, moved = [], "", {}
    for i, (kind, src, tgt, relink) in enumerate(jobs):
        try:
            if kind == "backward":
                st.merge_into_parent(src, tgt, relink=relink, parent_resolver=resolver(tgt))
                moved[os.path.abspath(src)] = os.path.abspath(tgt)
            elif kind == "forward":
                st.merge_into_child(src, tgt, parent_resolver=resolver(src))
            elif kind == "drop":
                os.unlink(src)
            else:
                raise SavedStateError(f"unknown merge kind {kind!r}")
        except (st.DiskImageError, OSError, SavedStateError) as e:
            error = f"merging '{src}' into '{tgt}' failed: {e}"
            break
        done.append(i)
    opened: dict[str, object] = {}
    for pc, h, path, read_only in holders:
        path = moved.get(path, path)
        img = opened.get(path)
        if img is None:
            img = opened[path] = st.open_image(path, read_only=read_only, parent_resolver=resolver(path))
            pc.images.append(img)
        h.image = img
    return {"done": done, "error": error}
