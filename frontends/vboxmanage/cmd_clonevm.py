"""`VBoxManage clonevm` (VBoxManageMisc.cpp handleCloneVM): IMachine::cloneTo into a new machine."""

import sys

import click

from .api import Api, call, find_machine, wait
from .cli import CONTEXT, vm_argument
from .output import SyntaxFailure

_FILE = "VBoxManageMisc.cpp"
MODES = {"machine": "MachineState", "machineandchildren": "MachineAndChildStates", "all": "AllStates"}
OPTIONS = {"link": "Link", "keepallmacs": "KeepAllMACs", "keepnatmacs": "KeepNATMACs",
           "keepdisknames": "KeepDiskNames", "keephwuuids": "KeepHwUUIDs"}


@click.command("clonevm", context_settings=CONTEXT)
@vm_argument()
@click.option("--snapshot", "-snapshot")
@click.option("--name", "-name")
@click.option("--groups")
@click.option("--basefolder", "-basefolder")
@click.option("--mode", "-mode", default="machine")
@click.option("--options", "-options", "opts", multiple=True)
@click.option("--uuid", "-uuid", default="")
@click.option("--register", "-register", is_flag=True)
def clonevm(vm, snapshot, name, groups, basefolder, mode, opts, uuid, register):
    from vboxsvc.api import enums as e

    cmd = "clonevm"
    if mode.lower() not in MODES:
        raise SyntaxFailure(f"Invalid clone mode '{mode}'", cmd)
    clone_mode = getattr(e.CloneMode, MODES[mode.lower()])
    options = []
    for word in ",".join(opts).split(","):
        word = word.strip().lower()
        if not word:
            continue
        if word not in OPTIONS:
            raise SyntaxFailure(f"Invalid clone options '{','.join(opts)}'", cmd)
        options.append(getattr(e.CloneOptions, OPTIONS[word]))
    group_list = [g for g in (groups or "").split(",") if g]
    vbox = Api.vbox()
    src = find_machine(vm, 2100, _FILE)
    if snapshot:
        with call("srcMachine->FindSnapshot(Bstr(pszSnapshotName).raw(), srcSnapshot.asOutParam())", 2110,
                  _FILE):
            src = src.find_snapshot(snapshot).machine
    with call("srcMachine->COMGETTER(Name)(bstrSrcName.asOutParam())", 2120, _FILE):
        target_name = name or f"{src.name} Clone"
        arch = src.platform.architecture
    flags = f"UUID={uuid}" if uuid else ""
    with call("ComposeMachineFilename(Bstr(pszTrgName).raw(), Bstr(pszTrgGroup).raw(), NULL, "
              "Bstr(pszTrgBaseFolder).raw(), bstrSettingsFile.asOutParam())", 2135, _FILE):
        settings = vbox.compose_machine_filename(target_name, group_list[0] if group_list else "", flags,
                                                 basefolder or "")
    with call("CreateMachine(bstrSettingsFile.raw(), Bstr(pszTrgName).raw(), enmPlatformArch, "
              "ComSafeArrayAsInParam(groups), NULL, Bstr(createFlags).raw(), NULL, NULL, NULL, "
              "trgMachine.asOutParam())", 2145, _FILE):
        target = vbox.create_machine(settings, target_name, arch, group_list, "", flags)
    with call("srcMachine->CloneTo(trgMachine, mode, ComSafeArrayAsInParam(options), progress.asOutParam())",
              2155, _FILE):
        progress = src.clone_to(target, clone_mode, options)
    wait(progress, "Clone VM failed", '"RTEXITCODE handleCloneVM(HandlerArg*)"')
    if register:
        with call("RegisterMachine(trgMachine)", 2165, _FILE):
            vbox.register_machine(target)
    sys.stdout.write(f'Machine has been successfully cloned as "{target_name}"\n')
    return 0
