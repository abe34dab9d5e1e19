"""`VBoxManage showvminfo` (VBoxManageInfo.cpp): human, --details, --machinereadable, --log, --json."""

import json
import sys

import click

from . import render_vminfo
from .api import Api, call, find_machine, lock_type
from .cli import CONTEXT, uint, vm_argument
from .vminfo import collect, snapshot_tree, transient_folders

_FILE = "VBoxManageInfo.cpp"


@click.command("showvminfo", context_settings=CONTEXT)
@vm_argument()
@click.option("--details", "-details", is_flag=True)
@click.option("--machinereadable", "-machinereadable", is_flag=True)
@click.option("--log", "log_index", default=None)
@click.option("--password-id", "password_id", default=None)
@click.option("--password", default=None)
@click.option("--json", "as_json", is_flag=True, help="print JSON (vboxpy extra)")
def showvminfo(vm, details, machinereadable, log_index, password_id, password, as_json):
    vbox = Api.vbox()
    machine = find_machine(vm, 3218, _FILE)
    if log_index is not None:
        return _show_log(machine, uint("--log", log_index, "showvminfo"))
    session = Api.session()
    locked = False
    try:  # a Shared lock like VBoxManage; failure to lock is not an error
        machine.lock_machine(session, lock_type("Shared"))
        locked = True
    except Exception:
        pass
    try:
        with call("showVMInfo(pVirtualBox, machine, ptrSession, details)", 3262, _FILE):
            info = collect(vbox, machine)
            if locked and info.get("accessible"):
                console = session.console
                info["running"] = console is not None
                if console is not None:
                    info["transient_folders"] = transient_folders(console)
                    info["vrde_live"] = _vrde_live(console)
            if info.get("accessible") and machine.snapshot_count:
                info["snapshots"], info["current_snapshot"] = snapshot_tree(machine)
    finally:
        if locked:
            try:
                session.unlock_machine()
            except Exception:
                pass
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    elif machinereadable:
        sys.stdout.write(render_vminfo.machine_readable(info))
    else:
        sys.stdout.write(render_vminfo.human(info, details))
    return 0


def _show_log(machine, index: int) -> int:
    offset = 0
    out = sys.stdout.buffer
    with call("ReadLog(uLogIdx, uOffset, _1M, ComSafeArrayAsOutParam(aLogData))", 3240, _FILE):
        while True:
            chunk = bytes(machine.read_log(index, offset, 1 << 20))
            if not chunk:
                break
            out.write(chunk)
            offset += len(chunk)
    out.flush()
    return 0


def _vrde_live(console) -> dict:
    """IConsole.VRDEServerInfo of the running VM (nothing served: not active, no clients)."""
    try:
        vi = console.vrde_server_info
        return {"active": bool(vi.active), "port": int(vi.port), "clients": int(vi.number_of_clients)}
    except Exception:
        return {"active": False, "port": -1, "clients": 0}
