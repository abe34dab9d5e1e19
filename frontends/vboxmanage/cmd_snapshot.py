"""`VBoxManage snapshot <vm> take|restore|restorecurrent|delete|list|edit|showvminfo`
(VBoxManageSnapshot.cpp), on IMachine's snapshot methods and ISnapshot."""

import datetime
import json
import sys

import click

from . import render_vminfo
from .api import Api, call, find_machine, is_api_error, locked, wait
from .cli import CONTEXT, vm_argument
from .output import ArgumentFailure, SyntaxFailure
from .render_snapshot import snapshot_human, snapshot_machine_readable
from .vminfo import collect, snapshot_tree

_FILE = "VBoxManageSnapshot.cpp"
_HANDLER = '"RTEXITCODE handleSnapshot(HandlerArg*)"'
SUBCOMMANDS = ("take", "restore", "restorecurrent", "delete", "list", "edit", "showvminfo")


@click.command("snapshot", context_settings={"help_option_names": [], "ignore_unknown_options": True})
@vm_argument()
@click.argument("sub")
@click.argument("rest", nargs=-1, type=click.UNPROCESSED)
def snapshot(vm, sub, rest):
    sub = sub.lower()
    if sub not in SUBCOMMANDS:
        raise SyntaxFailure(f"Invalid parameter '{sub}'", "snapshot")
    handler = globals()[f"_{sub}"]
    return handler.main(list(rest), prog_name=f"VBoxManage snapshot {sub}", standalone_mode=False,
                        obj={"vm": vm})


def _one_snapshot(machine, name: str):
    with call("sessionMachine->FindSnapshot(Bstr(a->argv[2]).raw(), pSnapshot.asOutParam())", 560, _FILE):
        return machine.find_snapshot(name)


def _split_take_result(result):
    """takeSnapshot returns (out id, IProgress); accept either order from the bus."""
    if isinstance(result, (list, tuple)):
        first, second = result
        return (first, second) if isinstance(first, str) else (second, first)
    return None, result


@click.command("take", context_settings=CONTEXT)
@click.argument("name")
@click.option("--description", "-description", "-desc", default="")
@click.option("--live", is_flag=True)
@click.option("--pause", is_flag=True)
@click.option("--uniquename", default=None)
@click.pass_obj
def _take(obj, name, description, live, pause, uniquename):
    vm = obj["vm"]
    machine = find_machine(vm, 420, _FILE)
    with locked(machine, "Shared", "LockMachine(a->session, LockType_Shared)", 430, _FILE) as session:
        m = session.machine
        if uniquename:
            name = _unique_name(m, name, uniquename)
        with call("sessionMachine->TakeSnapshot(Bstr(name).raw(), Bstr(desc).raw(), fPause, "
                  "bstrSnapshotId.asOutParam(), progress.asOutParam())", 497, _FILE):
            snap_id, progress = _split_take_result(m.take_snapshot(name, description, not live))
        wait(progress, "Failed to take snapshot", _HANDLER)
        if snap_id is None:
            snap_id = m.current_snapshot.id
    sys.stdout.write(f"Snapshot taken. UUID: {snap_id}\n")
    return 0


def _unique_name(m, name: str, flags: str) -> str:
    """--uniquename: Number counts from 2 (1 with Force), Timestamp appends the UTC time (+N s on clashes)."""
    words = set()
    for word in (w.strip().lower() for w in flags.split(",")):
        full = next((f for f in ("number", "timestamp", "space", "force") if word and f.startswith(word)),
                    None)
        if word and full is None:
            raise ArgumentFailure(f"Invalid unique name description '{flags}'")
        if full:
            words.add(full)
    if not words & {"number", "timestamp"}:
        return name

    def exists(candidate: str) -> bool:
        try:
            m.find_snapshot(candidate)
            return True
        except Exception as exc:
            if not is_api_error(exc):
                raise
            return False

    if "force" not in words and not exists(name):
        return name
    sep = " " if "space" in words else ""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    count = 1 if "force" in words and "number" in words else (2 if "number" in words else 0)
    while count < 500:
        if "number" in words:
            suffix = str(count)
        else:
            suffix = (now + datetime.timedelta(seconds=count)).strftime("%Y-%m-%dT%H:%M:%SZ")
        count += 1
        if not exists(name + sep + suffix):
            return name + sep + suffix
    raise ArgumentFailure("Failed to generate a unique snapshot name")


def _restore_or_delete(vm: str, name: str | None, delete: bool) -> int:
    machine = find_machine(vm, 520, _FILE)
    with locked(machine, "Shared", "LockMachine(a->session, LockType_Shared)", 530, _FILE) as session:
        m = session.machine
        if name is None:
            with call("sessionMachine->COMGETTER(CurrentSnapshot)(pSnapshot.asOutParam())", 640, _FILE):
                snap = m.current_snapshot
            if snap is None:
                sys.stdout.write("This machine does not have any snapshots\n")  # stdout, as VBoxManage does
                return 1
        else:
            snap = _one_snapshot(m, name)
        snap_name, snap_id = snap.name, snap.id
        if delete:
            sys.stdout.write(f"Deleting snapshot '{snap_name}' ({snap_id})\n")
            sys.stdout.flush()
            with call("sessionMachine->DeleteSnapshot(bstrSnapGuid.raw(), pProgress.asOutParam())", 580,
                      _FILE):
                progress = m.delete_snapshot(snap_id)
            wait(progress, "Snapshot operation failed", _HANDLER)
        else:
            sys.stdout.write(f"Restoring snapshot '{snap_name}' ({snap_id})\n")
            sys.stdout.flush()
            with call("sessionMachine->RestoreSnapshot(pSnapshot, pProgress.asOutParam())", 620, _FILE):
                progress = m.restore_snapshot(snap)
            wait(progress, "Snapshot operation failed", _HANDLER)
    return 0


@click.command("restore", context_settings=CONTEXT)
@click.argument("name")
@click.pass_obj
def _restore(obj, name):
    return _restore_or_delete(obj["vm"], name, delete=False)


@click.command("restorecurrent", context_settings=CONTEXT)
@click.pass_obj
def _restorecurrent(obj):
    return _restore_or_delete(obj["vm"], None, delete=False)


@click.command("delete", context_settings=CONTEXT)
@click.argument("name")
@click.pass_obj
def _delete(obj, name):
    return _restore_or_delete(obj["vm"], name, delete=True)


@click.command("list", context_settings=CONTEXT)
@click.option("--details", is_flag=True)
@click.option("--machinereadable", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON (vboxpy extra)")
@click.pass_obj
def _list(obj, details, machinereadable, as_json):
    machine = find_machine(obj["vm"], 700, _FILE)
    with call("pMachine->COMGETTER(SnapshotCount)(&cSnapshots)", 705, _FILE):
        count = int(machine.snapshot_count)
        tree = snapshot_tree(machine) if count else (None, "")
    root, current = tree
    if as_json:
        sys.stdout.write(json.dumps({"snapshots": root, "current": current}, indent=2) + "\n")
        return 0 if root else 1
    if root is None:
        sys.stdout.write("This machine does not have any snapshots\n")
        return 1
    if machinereadable:
        sys.stdout.write(snapshot_machine_readable(root, current))
    else:
        sys.stdout.write(snapshot_human(root, current))  # --details prints the same (VMINFO_FULL)
    return 0


@click.command("edit", context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--current", is_flag=True)
@click.option("--name", "-name", "new_name")
@click.option("--description", "-description", "-desc", "description")
@click.pass_obj
def _edit(obj, name, current, new_name, description):
    if not name and not current:
        raise SyntaxFailure("Missing snapshot name", "snapshot")
    machine = find_machine(obj["vm"], 740, _FILE)
    with locked(machine, "Shared", "LockMachine(a->session, LockType_Shared)", 745, _FILE) as session:
        m = session.machine
        if current:
            with call("sessionMachine->COMGETTER(CurrentSnapshot)(pSnapshot.asOutParam())", 760, _FILE):
                snap = m.current_snapshot
            if snap is None:
                sys.stdout.write("This machine does not have any snapshots\n")  # stdout, as VBoxManage does
                return 1
        else:
            snap = _one_snapshot(m, name)
        if new_name is not None:
            with call("pSnapshot->COMSETTER(Name)(Bstr(ValueUnion.psz).raw())", 790, _FILE):
                snap.name = new_name
        if description is not None:
            with call("pSnapshot->COMSETTER(Description)(Bstr(ValueUnion.psz).raw())", 800, _FILE):
                snap.description = description
    return 0


@click.command("showvminfo", context_settings=CONTEXT)
@click.argument("name")
@click.pass_obj
def _showvminfo(obj, name):
    machine = find_machine(obj["vm"], 820, _FILE)
    snap = _one_snapshot(machine, name)
    with call("pSnapshot->COMGETTER(Machine)(pMachine.asOutParam())", 830, _FILE):
        info = collect(Api.vbox(), snap.machine)
    sys.stdout.write(render_vminfo.human(info))
    return 0
