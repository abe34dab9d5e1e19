"""getextradata, setextradata, setproperty (VBoxManageMisc.cpp): key/value data and global settings."""


import click

from .api import Api, call, find_machine, locked
from .cli import CONTEXT, onoff, uint
from .extradata import get
from .output import SyntaxFailure

_FILE = "VBoxManageMisc.cpp"


@click.command("getextradata", context_settings=CONTEXT)
@click.argument("target")
@click.argument("key", required=False)
def getextradata(target, key):
    return get(target, key)


@click.command("setextradata", context_settings=CONTEXT)
@click.argument("target")
@click.argument("key")
@click.argument("value", required=False)
def setextradata(target, key, value):
    value = value or ""
    if target == "global":
        with call("a->virtualBox->SetExtraData(Bstr(a->argv[1]).raw(), Bstr(a->argv[2]).raw())", 1540, _FILE):
            Api.vbox().set_extra_data(key, value)
        return 0
    machine = find_machine(target, 1550, _FILE)
    with locked(machine, "Shared", "LockMachine(a->session, LockType_Shared)", 1555, _FILE) as session:
        with call("sessionMachine->SetExtraData(Bstr(a->argv[1]).raw(), Bstr(a->argv[2]).raw())", 1565,
                  _FILE):
            session.machine.set_extra_data(key, value)
    return 0


# property word -> (ISystemProperties attribute, value kind)
PROPERTIES = {
    "machinefolder": ("default_machine_folder", "path"),  # passed as typed, like VBoxManage
    "hwvirtexclusive": ("exclusive_hw_virt", "bool"),
    "vrdeauthlibrary": ("vrde_auth_library", "default"),
    "websrvauthlibrary": ("web_service_auth_library", "default"),
    "vrdeextpack": ("default_vrde_ext_pack", "null"),
    "loghistorycount": ("log_history_count", "uint"),
    "autostartdbpath": ("autostart_database_path", "null"),
    "defaultfrontend": ("default_frontend", "default"),
    "logginglevel": ("logging_level", "default"),
}


@click.command("setproperty", context_settings=CONTEXT)
@click.argument("args", nargs=-1)
def setproperty(args):
    cmd = "setproperty"
    if len(args) != 2:
        raise SyntaxFailure("Incorrect number of parameters", cmd)
    word, value = args[0].lower(), args[1]
    if word not in PROPERTIES:
        raise SyntaxFailure(f"Invalid parameter '{args[0]}'", cmd)
    attr, kind = PROPERTIES[word]
    if kind == "path":
        new = "" if value == "default" else value  # the service insists on an absolute path
    elif kind == "bool":
        new = onoff(args[0], value, cmd)
    elif kind == "uint":
        new = uint(args[0], value, cmd)
    elif kind == "default":
        new = "" if value == "default" else value
    else:
        new = "" if value == "null" else value
    sp = Api.vbox().system_properties
    label = "".join(part.capitalize() for part in attr.split("_"))
    with call(f"systemProperties->COMSETTER({label})(Bstr(a->argv[1]).raw())", 1700, _FILE):
        setattr(sp, attr, new)
    return 0
