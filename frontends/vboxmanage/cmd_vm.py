"""createvm, registervm, unregistervm (VBoxManageMisc.cpp): machine registration lifecycle."""

import os
import sys

import click

from .api import Api, call, find_machine, wait
from .cli import CONTEXT, vm_argument
from .output import SyntaxFailure

_FILE = "VBoxManageMisc.cpp"


@click.command("createvm", context_settings=CONTEXT)
@click.option("--name", "-name")
@click.option("--groups")
@click.option("--basefolder", "-basefolder")
@click.option("--ostype", "-ostype", default="")
@click.option("--uuid", "-uuid", default="")
@click.option("--register", "-register", is_flag=True)
@click.option("--default", "apply_default", is_flag=True)
@click.option("--platform-architecture", "--platform-arch", "platform", default="x86")
@click.option("--cipher", default="")
@click.option("--password-id", "password_id", default="")
@click.option("--password", default="")
def createvm(name, groups, basefolder, ostype, uuid, register, apply_default, platform, cipher, password_id,
             password):
    if not name:
        raise SyntaxFailure("Parameter --name is required", "createvm")
    arch = {"x86": 1, "arm": 2}.get(platform.lower())
    if arch is None:
        raise SyntaxFailure(f"Invalid platform architecture '{platform}'", "createvm")
    group_list = [g for g in (groups or "").split(",") if g] if groups else []
    flags = f"UUID={uuid}" if uuid else ""
    vbox = Api.vbox()
    with call("ComposeMachineFilename(bstrName.raw(), bstrPrimaryGroup.raw(), createFlags.raw(), "
              "bstrBaseFolder.raw(), bstrSettingsFile.asOutParam())", 342, _FILE):
        settings_file = vbox.compose_machine_filename(name, group_list[0] if group_list else "", flags,
                                                      basefolder or "")
    with call("CreateMachine(bstrSettingsFile.raw(), bstrName.raw(), enmPlatformArch, "
              "ComSafeArrayAsInParam(groups), bstrOsTypeId.raw(), createFlags.raw(), bstrCipher.raw(), "
              "bstrPasswordId.raw(), Bstr(strPassword).raw(), machine.asOutParam())", 352, _FILE):
        machine = vbox.create_machine(settings_file, name, arch, group_list, ostype, flags, cipher,
                                      password_id, password)
    with call("SaveSettings()", 364, _FILE):
        machine.save_settings()
    if apply_default:
        with call("ApplyDefaults(Bstr().raw())", 367, _FILE):
            machine.apply_defaults("")
        with call("SaveSettings()", 368, _FILE):
            machine.save_settings()
    if register:
        with call("RegisterMachine(machine)", 372, _FILE):
            vbox.register_machine(machine)
    with call("COMGETTER(Id)(bstrUuid.asOutParam())", 376, _FILE):
        machine_id = machine.id
        path = machine.settings_file_path
    done = "is created and registered." if register else "is created."
    sys.stdout.write(f"Virtual machine '{name}' {done}\nUUID: {machine_id}\nSettings file: '{path}'\n")
    return 0


@click.command("registervm", context_settings=CONTEXT)
@click.argument("filename")
@click.option("--password", default="")
def registervm(filename, password):
    vbox = Api.vbox()
    path = os.path.abspath(filename)
    with call("OpenMachine(Bstr(szVMFileAbs).raw(), Bstr(strPassword).raw(), machine.asOutParam())", 210,
              _FILE):
        machine = vbox.open_machine(path, password)
    with call("RegisterMachine(machine)", 216, _FILE):
        vbox.register_machine(machine)
    return 0


@click.command("unregistervm", context_settings=CONTEXT)
@vm_argument()
@click.option("--delete", "-delete", is_flag=True)
@click.option("--delete-all", "delete_all", is_flag=True)
def unregistervm(vm, delete, delete_all):
    from vboxsvc.api.enums import CleanupMode

    machine = find_machine(vm, 262, _FILE)
    mode = (CleanupMode.DetachAllReturnHardDisksAndVMRemovable if delete_all
            else CleanupMode.DetachAllReturnHardDisksOnly)
    with call("Unregister(enmCleanupMode, ComSafeArrayAsOutParam(aMedia))", 268, _FILE):
        media = list(machine.unregister(mode))
    if delete or delete_all:
        with call("DeleteConfig(ComSafeArrayAsInParam(aMedia), pProgress.asOutParam())", 273, _FILE):
            progress = machine.delete_config(media)
        wait(progress, "Machine delete failed", '"RTEXITCODE handleUnregisterVM(HandlerArg*)"')
        return 0
    for medium in media:  # like VBoxManage: close the returned disks, ignoring errors
        try:
            medium.close()
        except Exception:
            pass
    return 0
