"""VBoxManage's error block, message prefixes and progress line, on plain data."""

import io

from frontends.vboxmanage.names import result_name
from frontends.vboxmanage.output import com_error_block, msg_lines
from frontends.vboxmanage.progress import _follow


def test_canonical_unknown_vm_block():
    block = com_error_block(
        "Could not find a registered machine named 'foo'", 0x80BB0001, "VirtualBoxWrap", "IVirtualBox",
        '"FindMachine(Bstr(VMNameOrUuid).raw(), machine.asOutParam())" at line 3218 of file '
        'VBoxManageInfo.cpp')
    assert block == (
        "VBoxManage: error: Could not find a registered machine named 'foo'\n"
        "VBoxManage: error: Details: code VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), component VirtualBoxWrap, "
        "interface IVirtualBox, callee nsISupports\n"
        'VBoxManage: error: Context: "FindMachine(Bstr(VMNameOrUuid).raw(), machine.asOutParam())" '
        'at line 3218 '
        "of file VBoxManageInfo.cpp\n")


def test_block_without_error_info_and_generic_codes():
    assert com_error_block("", 0x80004005, "", "", "") == \
        "VBoxManage: error: Code NS_ERROR_FAILURE (extended info not available)\n"
    assert result_name(0x80070057) == "NS_ERROR_INVALID_ARG"
    assert result_name(0x80AB1234) == "Unknown Status 0x80AB1234"


def test_multiline_message_prefixes_each_line_and_keeps_blank_lines_bare():
    assert msg_lines("error: ", "one\n\ntwo") == "VBoxManage: error: one\n\nVBoxManage: error: two\n"


class FakeProgress:
    def __init__(self, steps, result_code=0, canceled=False):
        self.steps = list(steps)
        self.completed = False
        self.percent = 0
        self.result_code = result_code
        self.canceled = canceled
        self.cancelable = False

    def wait_for_completion(self, timeout_ms):
        assert timeout_ms == 100
        if self.steps:
            self.percent = self.steps.pop(0)
        self.completed = not self.steps

    def cancel(self):
        self.canceled = True


def run(progress):
    out = io.StringIO()
    code = _follow(progress, out, {"asked": False})
    return out.getvalue(), code


def test_progress_backfills_every_decade_once():
    text, code = run(FakeProgress([3, 47, 47, 99, 100]))
    assert text == "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%\n"
    assert code == 0


def test_progress_instant_completion_still_prints_all_decades():
    text, _ = run(FakeProgress([100]))
    assert text == "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%\n"


def test_progress_failure_ends_with_define_name():
    text, code = run(FakeProgress([35, 35], result_code=0x80BB0004))
    assert text == "0%...10%...20%...30%...VBOX_E_FILE_ERROR\n"
    assert code == 0x80BB0004


def test_progress_canceled():
    text, _ = run(FakeProgress([12, 12], result_code=0x80004004, canceled=True))
    assert text == "0%...10%...CANCELED\n"


class DetailedFake(FakeProgress):
    def __init__(self, steps, **kw):
        super().__init__(steps, **kw)
        self.operation_count, self.operation, self.operation_description = 2, 0, "Creating"
        self.operation_percent, self.time_remaining = 0, 5

    def wait_for_completion(self, timeout_ms):
        super().wait_for_completion(timeout_ms)
        self.operation = 1 if self.percent >= 50 else 0
        self.operation_percent = self.percent


def test_detailed_progress_lines():
    from frontends.vboxmanage.progress import _follow_detailed

    out = io.StringIO()
    assert _follow_detailed(DetailedFake([5, 5, 60, 100]), out, {"asked": False}) == 0
    assert out.getvalue() == ("(1/2) Creating 00% => 00% (5 s remaining)\n(1/2) Creating 05% => 05% (5 s "
                              "remaining)\n"
                              "(2/2) Creating 60% => 60% (5 s remaining)\n(2/2) Creating 100% => 100% (5 s "
                              "remaining)\n")


def test_error_info_chain_block():
    from types import SimpleNamespace

    from frontends.vboxmanage.api import error_info_block

    inner = SimpleNamespace(text="disk full", result_code=0x80BB0004, component="MediumWrap",
                            interface_id="IMedium",
                            next=None)
    outer = SimpleNamespace(text="Could not create", result_code=0x80004005, component="ProgressWrap",
                            interface_id="{0c0ad1e1-0000-0000-0000-000000000000}", next=inner)
    assert error_info_block(outer, 0x80004005, '"RTEXITCODE handleCreateMedium(HandlerArg*)"') == (
        "VBoxManage: error: Could not create\n"
        "VBoxManage: error: Details: code NS_ERROR_FAILURE (0x80004005), component ProgressWrap\n"
        "VBoxManage: error: --------\n"
        "VBoxManage: error: disk full\n"
        "VBoxManage: error: Details: code VBOX_E_FILE_ERROR (0x80bb0004), component MediumWrap, "
        "interface IMedium, "
        "callee nsISupports\n"
        'VBoxManage: error: Context: "RTEXITCODE handleCreateMedium(HandlerArg*)"\n')


def test_read_only_attribute_becomes_not_implemented_block():
    import pytest

    from frontends.vboxmanage.api import call
    from frontends.vboxmanage.output import CommandFailed

    with pytest.raises(CommandFailed) as info:
        with call("pMedium->COMSETTER(Location)(x)", 890, "VBoxManageDisk.cpp"):
            raise AttributeError("attribute 'location' of IMedium is read-only")
    assert info.value.text.splitlines()[:2] == [
        "VBoxManage: error: IMedium::location is read-only in this vboxsvc",
        "VBoxManage: error: Details: code NS_ERROR_NOT_IMPLEMENTED (0x80004001), component MediumWrap, "
        "interface IMedium, callee nsISupports"]
    with pytest.raises(AttributeError):
        with call("x", 1, "f.cpp"):
            raise AttributeError("plain bug")
