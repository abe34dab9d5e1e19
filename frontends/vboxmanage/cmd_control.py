"""startvm, controlvm, discardstate (VBoxManageMisc.cpp, VBoxManageControlVM.cpp): run-time control."""

import os
import sys

import click

from .api import Api, call, error_info_block, find_machine, is_api_error, locked, safe_get, wait
from .cli import CONTEXT, vm_argument
from .cmd_screen import SCREEN_ACTIONS, screen_job
from .output import ArgumentFailure, CommandFailed, SyntaxFailure, msg_lines

_CTL_FILE = "VBoxManageControlVM.cpp"
ACTIONS = ("pause", "resume", "reset", "poweroff", "savestate", "acpipowerbutton", "acpisleepbutton")


@click.command("startvm", context_settings=CONTEXT)
@click.argument("vms", nargs=-1, required=True)
@click.option("--type", "-type", "frontend", default="")
@click.option("--putenv", "-E", "putenv", multiple=True)
def startvm(vms, frontend, putenv):
    env = list(putenv)
    for var in ("DISPLAY", "XAUTHORITY"):  # VBoxManage on Linux forwards these to the VM process
        if var in os.environ and not any(e.split("=", 1)[0] == var for e in env):
            env.append(f"{var}={os.environ[var]}")
    for vm in vms:
        machine = find_machine(vm, 740, "VBoxManageMisc.cpp")
        session = Api.session()
        with call("machine->LaunchVMProcess(a->session, sessionType.raw(), ComSafeArrayAsInParam(aBstrEnv), "
                  "progress.asOutParam())", 752, "VBoxManageMisc.cpp"):
            progress = _launch(machine, session, frontend, env)
        sys.stdout.write(f'Waiting for VM "{vm}" to power on...\n')
        sys.stdout.flush()
        with call("progress->WaitForCompletion(-1)", 760, "VBoxManageMisc.cpp"):
            progress.wait_for_completion(-1)
            code = int(progress.result_code) & 0xFFFFFFFF
        try:
            session.unlock_machine()
        except Exception:
            pass
        if code >= 0x80000000:
            raise CommandFailed(error_info_block(safe_get(progress, "error_info", None), code, ""))
        sys.stdout.write(f'VM "{vm}" has been successfully started.\n')
    return 0


# A VM process that has just saved or powered off its machine may hold the machine's lock for a
# moment while it exits: a start right after that waits this long for it to let go.
EXITING_VM_WAIT_S = 10.0


def _launch(machine, session, frontend: str, env: list[str]):
    import time

    from vboxsvc.api.enums import MachineState
    from vboxsvc.api.errors import VBOX_E_INVALID_OBJECT_STATE, VBoxError

    deadline = time.monotonic() + EXITING_VM_WAIT_S
    while True:
        try:
            return machine.launch_vm_process(session, frontend, env)
        except VBoxError as e:
            stopped = (int(MachineState.PoweredOff), int(MachineState.Saved), int(MachineState.Aborted),
                       int(MachineState.AbortedSaved))
            if (e.result_code != VBOX_E_INVALID_OBJECT_STATE or "already locked" not in e.text
                    or int(machine.state) not in stopped or time.monotonic() > deadline):
                raise
            time.sleep(0.2)


@click.command("controlvm", context_settings=CONTEXT)
@vm_argument()
@click.argument("action")
@click.argument("extra", nargs=-1)
def controlvm(vm, action, extra):
    raw = action
    action = action.lower()
    nic_action = _nic_action(action)
    if nic_action is None and action not in ACTIONS and action not in SCREEN_ACTIONS:
        raise SyntaxFailure(f"Invalid parameter '{action}'", "controlvm")
    if nic_action is None and extra and action not in SCREEN_ACTIONS:
        raise SyntaxFailure(f"Invalid parameter '{extra[0]}'", "controlvm")
    job = screen_job(action, list(extra)) if action in SCREEN_ACTIONS else None
    machine = find_machine(vm, 1010, _CTL_FILE)
    with locked(machine, "Shared", "LockMachine(a->session, LockType_Shared)", 1020, _CTL_FILE) as session:
        with call("a->session->COMGETTER(Console)(console.asOutParam())", 1030, _CTL_FILE):
            console = session.console
        if console is None:
            raise CommandFailed(msg_lines("error: ", f"Machine '{vm}' is not currently running."))
        if nic_action is not None:
            if not extra:
                raise ArgumentFailure(f"Missing argument to '{raw}'.")
            _nic_act(session, nic_action, raw, list(extra))
        elif job is not None:
            job(session, console)
        else:
            _act(session, console, action)
    return 0


NIC_ACTIONS = ("setlinkstate", "natpf")
NIC_COUNT = 8


def _nic_action(action: str) -> str | None:
    for prefix in NIC_ACTIONS:
        if action.startswith(prefix) and action[len(prefix):].isdigit():
            return prefix
    return None


def _nic_act(session, kind: str, raw: str, extra: list[str]) -> None:
    """setlinkstate<N> on|off, natpf<N> <rule> | natpf<N> delete <name>: change the running VM's
    adapter through the session machine (the VM process hears of it) and save the settings."""
    from .nat_rules import add_rule, remove_rule

    number = raw[len(kind):]
    n = int(number)
    if not 1 <= n <= NIC_COUNT:
        raise ArgumentFailure(f"Invalid NIC number '{number}'.")
    m = session.machine
    with call("sessionMachine->GetNetworkAdapter(n - 1, adapter.asOutParam())", 1400, _CTL_FILE):
        adapter = m.get_network_adapter(n - 1)
    if kind == "setlinkstate":
        state = extra[0]
        if state not in ("on", "off"):
            raise SyntaxFailure(f"Invalid link state '{state}'.", "controlvm")
        with call("adapter->COMSETTER(CableConnected)(fEnabled)", 1420, _CTL_FILE):
            adapter.cable_connected = state == "on"
    else:
        with call("adapter->COMGETTER(NATEngine)(engine.asOutParam())", 1520, _CTL_FILE):
            engine = adapter.nat_engine
        if extra[0] == "delete":
            if len(extra) > 1:
                remove_rule(engine, extra[1], 1530, _CTL_FILE)
        else:
            add_rule(engine, extra[0], n, raw, "controlvm", 1560, _CTL_FILE)
    with call("sessionMachine->SaveSettings()", 2200, _CTL_FILE):
        m.save_settings()


def _act(session, console, action: str) -> None:
    if action in ("pause", "resume", "reset"):
        with call(f"console->{action.capitalize()}()", 1060, _CTL_FILE):
            getattr(console, action)()
    elif action == "acpipowerbutton":
        with call("console->PowerButton()", 1200, _CTL_FILE):
            console.power_button()
    elif action == "acpisleepbutton":
        with call("console->SleepButton()", 1210, _CTL_FILE):
            console.sleep_button()
    elif action == "poweroff":
        with call("console->PowerDown(progress.asOutParam())", 1100, _CTL_FILE):
            progress = console.power_down()
        try:
            wait(progress, "Failed to power off machine", '"RTEXITCODE handleControlVM(HandlerArg*)"')
        except Exception as exc:
            # the progress lives in the VM process, which ends once the VM is off: if it is gone
            # before its last report reached us, the machine's state in the service says how it went
            if not (is_api_error(exc) and _powered_off(session)):
                raise
            sys.stderr.write("100%\n")
    else:
        _savestate(console)


def _powered_off(session) -> bool:
    from vboxsvc.api.enums import MachineState

    try:
        state = int(session.machine.state)
    except Exception as exc:
        if not is_api_error(exc):
            raise
        return False
    return state in (int(MachineState.PoweredOff), int(MachineState.Aborted))


def _savestate(console) -> None:
    from vboxsvc.api.enums import MachineState

    paused_here = False
    with call("console->COMGETTER(State)(&machineState)", 1140, _CTL_FILE):
        if int(console.state) == int(MachineState.Running):
            console.pause()
            paused_here = True
    try:
        with call("sessionMachine->SaveState(progress.asOutParam())", 1150, _CTL_FILE):
            progress = console.save_state()
        wait(progress, "Failed to save machine state", '"RTEXITCODE handleControlVM(HandlerArg*)"')
    except CommandFailed:
        if paused_here:
            try:
                console.resume()
            except Exception as exc:
                if not is_api_error(exc):
                    raise
        raise


@click.command("discardstate", context_settings=CONTEXT)
@vm_argument()
def discardstate(vm):
    machine = find_machine(vm, 1950, "VBoxManageMisc.cpp")
    with locked(machine, "Write", "LockMachine(a->session, LockType_Write)", 1958, "VBoxManageMisc.cpp") as s:
        with call("sessionMachine->DiscardSavedState(true)", 1962, "VBoxManageMisc.cpp"):
            s.machine.discard_saved_state(True)
    return 0

