"""Batched calls (Client.batch) and the light call channel (vboxsvc.ipc.zmtp) against the real service."""

from __future__ import annotations

import pytest

from vboxsvc.api import MachineState, VBoxError
from vboxsvc.api import errors as rc
from vboxsvc.ipc.dispatcher import CALL, GET


def _lone(proxy, kind, member, args):
    try:
        return True, getattr(proxy, member) if kind == GET else getattr(proxy, member)(*args)
    except VBoxError as e:
        return False, e


def test_batch_answers_each_call_as_the_lone_call(client, vbox, new_vm):
    m = new_vm()
    calls = [
        (vbox, GET, "version", ()),
        (m, GET, "name", ()),
        (m, GET, "state", ()),
        (m, CALL, "get_extra_data", ("nothing",)),
        (vbox, CALL, "find_machine", ("no such vm",)),
        (m, GET, "no_such_attribute", ()),
        (m, CALL, "get_boot_order", (1,)),
        (m, CALL, "get_network_adapter", (99,)),
        (vbox, CALL, "find_machine", (42,)),
        (m, GET, "groups", ()),
    ]
    got = client.batch(calls)
    assert len(got) == len(calls)
    for (proxy, kind, member, args), (ok, value) in zip(calls, got, strict=True):
        if member == "no_such_attribute":  # no proxy member to compare with: the service's answer
            assert not ok and value.result_code == rc.E_NOTIMPL
            continue
        lone_ok, lone = _lone(proxy, kind, member, args)
        assert ok == lone_ok, member
        if ok:
            assert value == lone and type(value) is type(lone), member
        else:
            assert (value.result_code, value.text, value.interface, value.component) == (
                lone.result_code,
                lone.text,
                lone.interface,
                lone.component,
            ), member
    assert got[2] == (True, MachineState.PoweredOff) and isinstance(got[2][1], MachineState)
    assert not got[4][0] and got[4][1].result_code == rc.VBOX_E_OBJECT_NOT_FOUND
    adapter = got[7]
    assert not adapter[0] and adapter[1].result_code == rc.E_INVALIDARG
    assert client.batch([]) == []


def test_batch_returns_objects_usable_as_proxies(client, new_vm):
    m = new_vm()
    (ok, nic), (ok2, platform) = client.batch(
        [(m, CALL, "get_network_adapter", (0,)), (m, GET, "platform", ())]
    )
    assert ok and ok2 and nic.slot == 0 and platform.chipset_type is not None


def test_malformed_batches_are_refused(client, vbox):
    for bad in ("notalist", [[vbox._ref, GET, "version", []]] * 5000):
        try:
            client._request({"op": "batch", "b": bad})
        except VBoxError as e:
            assert e.result_code == rc.E_INVALIDARG
        else:
            raise AssertionError("a malformed batch was accepted")
    entries = [
        [1, 2],
        ["x", GET, "version", []],
        [None, GET, "version", []],
        [vbox._ref, "k", "version", []],
        [vbox._ref, GET, "version", "notalist"],
        [vbox._ref, GET, "version", []],
    ]
    got = client._request({"op": "batch", "b": entries})
    assert [failed for failed, _ in got] == [1, 1, 1, 1, 1, 0]
    assert all(value[0] == rc.E_INVALIDARG for failed, value in got if failed)
    assert got[-1][1] == vbox.version  # the good entry still runs, and the service still answers


def test_light_client_speaks_to_the_service(client, vbox, new_vm):
    from vboxsvc.ipc.connection import Client

    m = new_vm()
    light = Client(light=True, name="light-test")
    try:
        assert "zmq" not in type(light._sock).__module__
        assert light.virtualbox.version == vbox.version
        found = light.virtualbox.find_machine(m.id)
        assert found.name == m.name
        got = light.batch([(found, GET, "id", ()), (found, GET, "name", ())])
        assert got == [(True, m.id), (True, m.name)]
        big = "x" * 100_000  # a long frame each way
        assert light.virtualbox.get_extra_data(big) == ""
        try:
            light.virtualbox.find_machine("no such vm")
        except VBoxError as e:
            assert e.result_code == rc.VBOX_E_OBJECT_NOT_FOUND
        else:
            raise AssertionError("find_machine found a ghost")
    finally:
        light.close()
    assert light._closed


class _VrdeInfo:
    """An object another process exports (as a VM process exports its console's parts)."""

    __interface__ = "IVRDEServerInfo"

    def __init__(self):
        self.reads = []
        self.port = 5901

    def _read(self, name, value):
        self.reads.append(name)
        return value

    @property
    def active(self):
        return self._read("active", True)

    @property
    def number_of_clients(self):
        return self._read("number_of_clients", 2)

    @property
    def begin_time(self):
        raise VBoxError(rc.E_ACCESSDENIED, "not now", "IVRDEServerInfo", "")


@pytest.mark.parametrize("takes_batches", [True, False])
def test_batch_on_objects_of_another_process(client, monkeypatch, takes_batches):
    """The service hands a batch's entries on one process's objects to that process in one frame
    (one frame per entry to a process that did not say it takes batches, such as one started by an
    older version); each answers as the lone call would, errors included, in order, beside the
    service's own."""
    from vboxsvc.ipc.callee import Callee as _Callee
    from vboxsvc.ipc.connection import Client
    from vboxsvc.ipc.proxy import make_proxy

    if not takes_batches:
        send = _Callee._send
        monkeypatch.setattr(_Callee, "_send", lambda self, sock, msg: send(
            self, sock, {k: v for k, v in msg.items() if not (msg.get("op") == "hello" and k == "batch")}))
    owner = Client(name="owner-test")
    try:
        info = _VrdeInfo()
        frames = []
        ref = owner.export(info)
        callee = owner._callee
        incoming = callee._incoming
        callee._incoming = lambda parts: (frames.append(parts), incoming(parts))
        proxy = make_proxy(client, ref)
        vbox = client.virtualbox
        got = client.batch([(proxy, GET, "active", ()), (vbox, GET, "version", ()),
                            (proxy, GET, "number_of_clients", ()), (proxy, GET, "begin_time", ()),
                            (proxy, GET, "port", ())])
        assert len(frames) == (1 if takes_batches else 4)
        assert [ok for ok, _ in got] == [True, True, True, False, True]
        assert [got[0][1], got[1][1], got[2][1], got[4][1]] == [True, vbox.version, 2, 5901]
        assert (got[3][1].result_code, got[3][1].text) == (rc.E_ACCESSDENIED, "not now")
        assert info.reads == ["active", "number_of_clients"]
        frames.clear()
        assert proxy.number_of_clients == 2 and len(frames) == 1     # a lone call: a frame of its own
    finally:
        owner.close()


@pytest.mark.parametrize("answer", ["garbage", [[0, 1]], [[1, "not an error"], [0, 2]], [[0], [0, 2]]])
def test_a_malformed_batch_answer_from_another_process_fails_its_entries(client, monkeypatch, answer):
    """A process answering a forwarded batch with nonsense (a hostile or broken VM process) costs its
    own entries an error, nothing else: the service answers the caller and keeps serving."""
    from vboxsvc.ipc.callee import Callee as _Callee
    from vboxsvc.ipc.connection import Client
    from vboxsvc.ipc.proxy import make_proxy

    monkeypatch.setattr(_Callee, "_work_batch",
                        lambda self, msg: self._answer({"op": "ret", "i": msg.get("i"), "r": answer}))
    owner = Client(name="owner-test")
    try:
        proxy = make_proxy(client, owner.export(_VrdeInfo()))
        vbox = client.virtualbox
        got = client.batch([(proxy, GET, "active", ()), (vbox, GET, "version", ()),
                            (proxy, GET, "number_of_clients", ())])
        assert got[1] == (True, vbox.version)
        if answer == [[1, "not an error"], [0, 2]]:
            assert not got[0][0] and got[0][1].text == "malformed error from the object's owner"
            assert got[2] == (True, 2)
        else:
            for ok, error in (got[0], got[2]):
                assert not ok and error.result_code == rc.E_FAIL
                assert error.text == "malformed batch answer from the object's owner"
        assert vbox.version and proxy.port == 5901      # both processes still served
    finally:
        owner.close()
