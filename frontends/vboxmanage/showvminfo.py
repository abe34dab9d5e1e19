"""What `VBoxManage showvminfo` does (VBoxManageInfo.cpp showVMInfo), without the option parser.

cmd_showvminfo parses every form with click and calls `show`; main calls `fast` first, which
takes the plain forms tools poll with (`showvminfo <vm> --machinereadable`, `--details`, none)
so that those runs never load click.
"""

import sys

from . import render_vminfo
from .api import FIND_MACHINE, Api, call, is_api_error, lock_type
from .vminfo import collect, plans, snapshot_tree, transient_folders

_FILE = "VBoxManageInfo.cpp"
FLAGS = {"--machinereadable": "machinereadable", "-machinereadable": "machinereadable",
         "--details": "details", "-details": "details"}


def fast(rest: list[str]) -> int | None:
    """`show` for one VM name and at most one of each of the plain flags; None for anything else."""
    names = [a for a in rest if a not in FLAGS]
    flags = [FLAGS[a] for a in rest if a in FLAGS]
    if len(names) != 1 or names[0].startswith("-") or len(set(flags)) != len(flags):
        return None
    return show(names[0], "details" in flags, "machinereadable" in flags, False)


def show(vm: str, details: bool, machinereadable: bool, as_json: bool) -> int:
    from vboxsvc.ipc.wire import Earlier

    from .fetch import CALL, GET, batch, prefetch_all

    vbox = Api.vbox()
    with call(FIND_MACHINE, 3218, _FILE):
        # the machine, a new session and a Shared lock like VBoxManage's, in one round trip (the
        # lock uses what the first two entries answered); failure to lock is not an error
        (found, machine), (made, session), (locked, _) = batch([
            (vbox, CALL, "find_machine", (vm,)),
            (Api.client().virtualbox_client, GET, "session", ()),
            (Earlier(0, "IMachine"), CALL, "lock_machine", (Earlier(1, "ISession"), lock_type("Shared")))])
        if not found:
            raise machine
    if not made:
        raise session
    try:
        with call("showVMInfo(pVirtualBox, machine, ptrSession, details)", 3262, _FILE):
            # the machine, the OS type's description and (locked: the VM runs) what is read of its
            # console, all in the same few batches
            fetched, fetched_vbox, fetched_session = prefetch_all([machine, vbox, session],
                                                                  plans(vbox, console=locked))
            info = collect(fetched_vbox, fetched, batched=False)
            if locked and info.get("accessible"):
                facts = _console_facts(fetched_session)
                info["running"] = facts is not None
                if facts is not None:
                    info["transient_folders"], info["vrde_live"] = facts
            if info.get("accessible") and fetched.snapshot_count:
                info["snapshots"], info["current_snapshot"] = snapshot_tree(machine)
    finally:
        if locked:  # its outcome is not waited for: the command ends here, and VBoxManage ignores it
            try:
                Api.client().send_last(session, "unlock_machine")
            except Exception:
                pass
    if as_json:
        import json

        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    elif machinereadable:
        sys.stdout.write(render_vminfo.machine_readable(info))
    else:
        sys.stdout.write(render_vminfo.human(info, details))
    return 0


def _console_facts(session):
    """(transient shared folders, VRDE state) of the running VM's console; None without a console,
    or when its process ended while we read (a VM saved or powered off as a tool polls it)."""
    try:
        console = session.console
        if console is None:
            return None
        return transient_folders(console), _vrde_live(console)
    except Exception as exc:
        if is_api_error(exc):
            return None
        raise


def _vrde_live(console) -> dict:
    """IConsole.VRDEServerInfo of the running VM (nothing served: not active, no clients)."""
    try:
        vi = console.vrde_server_info
        return {"active": bool(vi.active), "port": int(vi.port), "clients": int(vi.number_of_clients)}
    except Exception:
        return {"active": False, "port": -1, "clients": 0}
