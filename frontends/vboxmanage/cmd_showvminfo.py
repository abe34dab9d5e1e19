"""`VBoxManage showvminfo` (VBoxManageInfo.cpp): human, --details, --machinereadable, --log, --json."""

import sys

import click

from .api import call, find_machine
from .cli import CONTEXT, uint, vm_argument
from .showvminfo import show

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
    if log_index is not None:
        machine = find_machine(vm, 3218, _FILE)
        return _show_log(machine, uint("--log", log_index, "showvminfo"))
    return show(vm, details, machinereadable, as_json)


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
