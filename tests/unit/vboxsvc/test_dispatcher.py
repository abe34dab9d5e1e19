"""Argument checking and invocation driven by the schema (no bus involved)."""

from __future__ import annotations

import pytest

from vboxsvc.api import VBoxError
from vboxsvc.api import errors as rc
from vboxsvc.api.enums import DeviceType, LockType
from vboxsvc.api.schema import INTERFACES, Type
from vboxsvc.ipc.dispatcher import CALL, GET, SET, Deferred, ObjectTable, bind_args, check_value, invoke


class FakeSession:
    __interface__ = "ISession"


class FakeMachine:
    __interface__ = "IMachine"

    def __init__(self):
        self.calls = []
        self._memory = 128

    @property
    def memory_size(self):
        return self._memory

    @memory_size.setter
    def memory_size(self, v):
        self._memory = v

    @property
    def id(self):
        return "abc"

    def lock_machine(self, session, lock_type):
        self.calls.append((session, lock_type))

    def set_boot_order(self, position, device):
        raise RuntimeError("boom")


def test_check_value_types():
    assert check_value(Type("int"), 5, "x") == 5
    assert check_value(Type("bool"), 1, "x") is True
    assert check_value(Type("LockType"), 2, "x") == LockType.Write
    assert check_value(Type("str", True), ("a", "b"), "x") == ["a", "b"]
    for t, v in ((Type("int"), True), (Type("int"), "1"), (Type("str"), 1), (Type("bool"), 2),
                 (Type("LockType"), 9), (Type("LockType"), "Write"), (Type("str", True), "ab"),
                 (Type("ISession"), FakeMachine()), (Type("bytes"), "s")):
        with pytest.raises(VBoxError) as e:
            check_value(t, v, "x")
        assert e.value.result_code == rc.E_INVALIDARG


def test_bind_args_defaults_and_keywords():
    m = INTERFACES["IVirtualBox"].methods["create_machine"]
    args = bind_args(m, ["", "vm"], {"os_type_id": "Linux_64"})
    assert args[1] == "vm" and args[4] == "Linux_64" and args[3] == [] and args[2] == 1
    with pytest.raises(VBoxError):
        bind_args(m, [], {})
    with pytest.raises(VBoxError):
        bind_args(m, ["", "vm"], {"bogus": 1})
    with pytest.raises(VBoxError):
        bind_args(m, [""] * 10, {})


def test_invoke_members_only():
    fm = FakeMachine()
    assert invoke(fm, GET, "memory_size") == 128
    invoke(fm, SET, "memory_size", [256])
    assert fm.memory_size == 256
    s = FakeSession()
    invoke(fm, CALL, "lock_machine", [s, 2])
    assert fm.calls == [(s, LockType.Write)] and isinstance(fm.calls[0][1], LockType)
    for kind, name, args, code in ((GET, "_memory", [], rc.E_NOTIMPL), (CALL, "__init__", [], rc.E_NOTIMPL),
                                   (SET, "id", ["x"], rc.E_INVALIDARG),
                                   (SET, "memory_size", ["x"], rc.E_INVALIDARG),
                                   (CALL, "lock_machine", [fm, 2], rc.E_INVALIDARG),
                                   (9, "id", [], rc.E_INVALIDARG)):
        with pytest.raises(VBoxError) as e:
            invoke(fm, kind, name, args)
        assert e.value.result_code == code, name
        assert e.value.interface == "IMachine"
    with pytest.raises(VBoxError) as e:  # an implementation bug becomes E_FAIL, not a crash
        invoke(fm, CALL, "set_boot_order", [1, DeviceType.DVD])
    assert e.value.result_code == rc.E_FAIL and "boom" in e.value.text


def test_object_table_and_deferred():
    t = ObjectTable(b"")
    a, b = FakeMachine(), FakeMachine()
    b.__bus_tag__ = "tag"
    ra, rb = t.ref(a), t.ref(b)
    assert t.ref(a).oid == ra.oid and ra.oid != rb.oid and t.get(ra.oid) is a
    t.drop_tag("tag")
    assert t.get(rb.oid) is None and t.get(ra.oid) is a
    with pytest.raises(TypeError):
        t.ref(object())
    d = Deferred()
    got = []
    d.add_callback(lambda v, e: got.append((v, e)))
    d.resolve(5)
    d.fail(VBoxError(1, "late"))  # ignored: resolved once
    d.add_callback(lambda v, e: got.append((v, e)))
    assert got == [(5, None), (5, None)]
