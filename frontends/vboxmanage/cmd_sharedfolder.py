"""`VBoxManage sharedfolder add|remove` (VBoxManageMisc.cpp, sharedFolderAdd / sharedFolderRemove).

Permanent folders change the machine's settings through a Write-locked session; `--transient`
ones go to the running VM's console (a Shared lock) and vanish when it stops.
"""

import os

import click

from .api import call, find_machine, locked, safe_get
from .cli import CONTEXT
from .output import CommandFailed, SyntaxFailure, msg_lines

_FILE = "VBoxManageMisc.cpp"
_CMD = "sharedfolder"


@click.command("sharedfolder", context_settings=dict(CONTEXT, ignore_unknown_options=True))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sharedfolder(args):
    if not args:
        raise SyntaxFailure("No subcommand specified", _CMD)
    sub, rest = args[0], list(args[1:])
    if sub == "add":
        return _add(parse(rest, adding=True))
    if sub == "remove":
        return _remove(parse(rest, adding=False))
    raise SyntaxFailure(f'Invalid parameter \'{sub}\'', _CMD)


_VALUED = {"--name": "name", "-name": "name", "--hostpath": "hostpath", "-hostpath": "hostpath",
           "--auto-mount-point": "mountpoint"}
_SWITCHES = {"--readonly": "readonly", "-readonly": "readonly", "--transient": "transient",
             "-transient": "transient", "--automount": "automount", "-automount": "automount"}


def parse(args: list[str], adding: bool) -> dict:
    """RTGetOpt over add/remove's options (`--opt value` and `--opt=value`)."""
    out = {"vm": None, "name": None, "hostpath": None, "mountpoint": "", "readonly": False,
           "transient": False, "automount": False}
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        opt, eq, inline = a.partition("=")
        if opt in _VALUED and (adding or _VALUED[opt] == "name"):
            if eq:
                out[_VALUED[opt]] = inline
            elif i < len(args):
                out[_VALUED[opt]] = args[i]
                i += 1
            else:
                raise SyntaxFailure(f"Missing the 1st value for option {opt}", _CMD)
        elif a in _SWITCHES and (adding or _SWITCHES[a] == "transient"):
            out[_SWITCHES[a]] = True
        elif a.startswith("-") and len(a) > 1:
            raise SyntaxFailure(f"Unknown option: {opt}", _CMD)
        elif out["vm"] is None:
            out["vm"] = a
        else:
            raise SyntaxFailure(f"Invalid parameter '{a}'", _CMD)
    if out["vm"] is None:
        raise SyntaxFailure("No machine was specified", _CMD)
    name = out["name"]
    if name is None:
        raise SyntaxFailure("No shared folder name (--name) was given", _CMD)
    for ch, what in ((" ", "contains space"), ("\t", "contains tabs"), ("\n", "contains newline"),
                     ("\r", "contains newline")):
        if ch in name:
            raise SyntaxFailure(f"Invalid shared folder name '{name}': {what}", _CMD)
    if adding:
        if out["hostpath"] is None:
            raise SyntaxFailure("No host path (--hostpath) was given", _CMD)
        out["hostpath"] = os.path.abspath(out["hostpath"])
    return out


def _not_running(vm: str) -> CommandFailed:
    return CommandFailed(msg_lines("error: ", f"Machine '{vm}' is not currently running."))


def _add(o: dict) -> int:
    machine = find_machine(o["vm"], 1430, _FILE)
    writable, auto = not o["readonly"], o["automount"]
    if o["transient"]:
        with locked(machine, "Shared", "LockMachine(a->session, LockType_Shared)", 1440, _FILE) as session:
            console = safe_get(session, "console", None)
            if console is None:
                raise _not_running(o["vm"])
            with call("ptrConsole->CreateSharedFolder(Bstr(pszName).raw(), Bstr(szAbsHostPath).raw(), "
                      "fWritable, fAutoMount, Bstr(pszAutoMountPoint).raw())", 1447, _FILE):
                console.create_shared_folder(o["name"], o["hostpath"], writable, auto, o["mountpoint"])
        return 0
    with locked(machine, "Write", "LockMachine(a->session, LockType_Write)", 1455, _FILE) as session:
        m = session.machine
        with call("ptrSessionMachine->CreateSharedFolder(Bstr(pszName).raw(), Bstr(szAbsHostPath).raw(), "
                  "fWritable, fAutoMount, Bstr(pszAutoMountPoint).raw())", 1461, _FILE):
            m.create_shared_folder(o["name"], o["hostpath"], writable, auto, o["mountpoint"])
        with call("ptrSessionMachine->SaveSettings()", 1464, _FILE):
            m.save_settings()
    return 0


def _remove(o: dict) -> int:
    machine = find_machine(o["vm"], 1520, _FILE)
    if o["transient"]:
        with locked(machine, "Shared", "LockMachine(a->session, LockType_Shared)", 1527, _FILE) as session:
            console = safe_get(session, "console", None)
            if console is None:
                raise _not_running(o["vm"])
            with call("ptrConsole->RemoveSharedFolder(Bstr(pszName).raw())", 1533, _FILE):
                console.remove_shared_folder(o["name"])
        return 0
    with locked(machine, "Write", "LockMachine(a->session, LockType_Write)", 1540, _FILE) as session:
        m = session.machine
        with call("ptrSessionMachine->RemoveSharedFolder(Bstr(pszName).raw())", 1545, _FILE):
            m.remove_shared_folder(o["name"])
        with call("ptrSessionMachine->SaveSettings()", 1548, _FILE):
            m.save_settings()
    return 0
