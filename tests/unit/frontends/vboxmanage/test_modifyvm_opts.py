"""modifyvm's RTGetOpt-style option parsing: spellings, indexes, one/two-value options, errors."""

import pytest

from frontends.vboxmanage.modifyvm_opts import parse
from frontends.vboxmanage.output import SyntaxFailure


def test_both_spellings_and_equals_form():
    assert parse(["--os-type", "Linux_64", "--ostype=Debian_64", "--cpu-execution-cap", "50",
                  "--cpuexecutioncap=60", "--nested-paging", "off", "--nestedpaging", "on"]) == [
        ("ostype", 0, ["Linux_64"]), ("ostype", 0, ["Debian_64"]), ("cpuexecutioncap", 0, ["50"]),
        ("cpuexecutioncap", 0, ["60"]), ("nestedpaging", 0, ["off"]), ("nestedpaging", 0, ["on"])]


def test_indexed_options():
    assert parse(["--nic1", "nat", "--nic-type2", "virtio", "--nictype3", "82540EM", "--macaddress1", "auto",
                  "--mac-address4=080027000001", "--cable-connected1", "off", "--boot4", "net"]) == [
        ("nic", 1, ["nat"]), ("nictype", 2, ["virtio"]), ("nictype", 3, ["82540EM"]),
        ("macaddress", 1, ["auto"]), ("macaddress", 4, ["080027000001"]), ("cableconnected", 1, ["off"]),
        ("boot", 4, ["net"])]


def test_uart_takes_two_values_unless_off():
    assert parse(["--uart1", "0x3F8", "4", "--uart2", "off", "--memory", "64"]) == [
        ("uart", 1, ["0x3F8", "4"]), ("uart", 2, ["off"]), ("memory", 0, ["64"])]
    assert parse(["--uart-mode1", "file", "/tmp/x", "--uartmode2", "disconnected", "--uartmode3",
                  "/dev/ttyS0",
                  "--uart-mode4", "tcpserver", "5555"]) == [
        ("uartmode", 1, ["file", "/tmp/x"]), ("uartmode", 2, ["disconnected"]),
        ("uartmode", 3, ["/dev/ttyS0"]),
        ("uartmode", 4, ["tcpserver", "5555"])]


def test_boot_kernel_options_and_old_single_dash():
    assert parse(["--boot-kernel", "k", "--boot-initrd", "i", "--boot-cmdline", "console=ttyS0 quiet",
                  "-memory", "32"]) == [
        ("bootkernel", 0, ["k"]), ("bootinitrd", 0, ["i"]), ("bootcmdline", 0, ["console=ttyS0 quiet"]),
        ("memory", 0, ["32"])]


@pytest.mark.parametrize("args, message", [
    (["--bogus", "1"], "Unknown option: --bogus"),
    (["--memory"], "Missing the 1st value for option --memory"),
    (["--uart1", "0x3f8"], "Missing the 2nd value for option --uart1"),
    (["--boot5", "disk"], "Invalid index in option --boot5: 5 (valid range 1..4)"),
    (["stray"], "Invalid parameter 'stray'"),
])
def test_errors(args, message):
    with pytest.raises(SyntaxFailure) as info:
        parse(args)
    assert info.value.text == message and info.value.command == "modifyvm"
