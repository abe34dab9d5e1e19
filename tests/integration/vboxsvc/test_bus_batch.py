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


@pytest.mark.parametrize("light", [False, True], ids=["pyzmq", "light"])
def test_an_entry_uses_the_result_of_an_earlier_one(client, vbox, new_vm, light):
    """Find a machine and read it in one round trip: an Earlier target or argument is the result of
    that entry; the answers are those of the lone calls made one after the other."""
    from vboxsvc.ipc.connection import Client
    from vboxsvc.ipc.wire import Earlier

    m = new_vm(f"earlier-{'light' if light else 'pyzmq'}")
    c = Client(light=True, name="earlier-test") if light else client
    try:
        got = c.batch([(c.virtualbox, CALL, "find_machine", (m.name,)),
                       (Earlier(0, "IMachine"), GET, "state", ()),
                       (Earlier(0, "IMachine"), CALL, "get_extra_data", ("k",)),
                       (c.virtualbox_client, GET, "session", ()),
                       (Earlier(0, "IMachine"), CALL, "lock_machine", (Earlier(3, "ISession"), 1)),
                       (Earlier(3, "ISession"), GET, "state", ()),
                       (Earlier(3, "ISession"), CALL, "unlock_machine", ())])
        assert [ok for ok, _ in got] == [True] * 7, got
        assert got[0][1].id == m.id
        assert got[1][1] == MachineState.PoweredOff and isinstance(got[1][1], MachineState)
        assert got[2][1] == m.get_extra_data("k") == ""
        assert int(got[5][1]) == 2  # SessionState.Locked: the lock ran before the read
        assert m.session_state == 1  # and the unlock after it
    finally:
        if light:
            c.close()


def test_earlier_references_that_cannot_be_resolved_fail_their_entry_only(client, vbox, new_vm):
    from vboxsvc.ipc.wire import Earlier

    m = new_vm()
    got = client.batch([(vbox, CALL, "find_machine", ("no such vm",)),
                        (Earlier(0, "IMachine"), GET, "name", ()),      # entry 0 failed
                        (Earlier(2, "IMachine"), GET, "name", ()),      # itself
                        (Earlier(9, "IMachine"), GET, "name", ()),      # after it
                        (vbox, GET, "version", ()),
                        (Earlier(4, "IMachine"), GET, "name", ()),      # a string is no target
                        (m, CALL, "get_extra_data", (Earlier(4),)),     # a string is a fine argument
                        (m, CALL, "set_extra_data", ("x", [Earlier(4)]))])  # nested: no
    assert [ok for ok, _ in got] == [False, False, False, False, True, False, True, False]
    assert got[0][1].result_code == rc.VBOX_E_OBJECT_NOT_FOUND
    for i in (1, 2, 3, 5, 7):
        assert got[i][1].result_code == rc.E_INVALIDARG, (i, got[i][1].text)
    assert "which failed" in got[1][1].text and "does not run before it" in got[2][1].text
    assert got[6][1] == ""
    # outside a batch an Earlier means nothing: refused, and the service goes on
    for msg in ({"op": "call", "o": Earlier(0), "m": "name", "k": GET, "a": []},
                {"op": "call", "o": vbox._ref, "m": "get_extra_data", "k": CALL, "a": [Earlier(0)]}):
        try:
            client._request(msg)
        except VBoxError as e:
            assert e.result_code == rc.E_INVALIDARG
        else:
            raise AssertionError("a lone call with an Earlier was accepted")
    assert vbox.version


def test_earlier_with_a_service_that_does_not_take_it(client, vbox, new_vm, monkeypatch):
    """A service from before Earlier (one left running across an upgrade) would drop such a frame:
    the client then makes the lone calls itself, with the same answers."""
    from vboxsvc.ipc.wire import Earlier

    m = new_vm()
    calls = [(vbox, CALL, "find_machine", (m.name,)), (Earlier(0, "IMachine"), GET, "state", ()),
             (vbox, CALL, "find_machine", ("no such vm",)), (Earlier(2, "IMachine"), GET, "name", ())]
    assert "earlier" in client.capabilities
    pipelined = client.batch(calls)
    requests = []
    monkeypatch.setattr(client, "capabilities", frozenset())
    send = client._request
    monkeypatch.setattr(client, "_request", lambda msg, **kw: requests.append(msg["op"]) or send(msg, **kw))
    alone = client.batch(calls)
    assert requests == ["call", "call", "call"]  # no batch frame; the entry after the failure is not sent
    assert [ok for ok, _ in alone] == [ok for ok, _ in pipelined] == [True, True, False, False]
    assert alone[0][1].id == pipelined[0][1].id == m.id
    assert alone[1] == pipelined[1] == (True, MachineState.PoweredOff)
    assert alone[2][1].result_code == pipelined[2][1].result_code == rc.VBOX_E_OBJECT_NOT_FOUND
    assert alone[3][1].result_code == pipelined[3][1].result_code == rc.E_INVALIDARG


def test_a_call_on_an_object_its_owner_no_longer_exports_is_answered_at_once(client):
    """The owner cannot decode a call naming an object it dropped: it answers with an error instead
    of leaving the caller to wait until the owner ends (or the call's time-out)."""
    import time

    from vboxsvc.ipc.connection import Client
    from vboxsvc.ipc.proxy import make_proxy

    owner = Client(name="owner-test")
    try:
        info = _VrdeInfo()
        proxy = make_proxy(client, owner.export(info))
        assert proxy.port == 5901
        owner.unexport(info)
        start = time.monotonic()
        with pytest.raises(VBoxError) as e:
            proxy.port  # noqa: B018 - the read is the test
        assert e.value.result_code == rc.E_INVALIDARG and "cannot decode" in e.value.text
        got = client.batch([(proxy, GET, "active", ()), (proxy, GET, "port", ())])  # one forwarded frame
        assert [ok for ok, _ in got] == [False, False]
        assert all(err.result_code == rc.E_INVALIDARG for _, err in got)
        assert time.monotonic() - start < 10
        assert client.virtualbox.version  # and the service goes on
    finally:
        owner.close()
