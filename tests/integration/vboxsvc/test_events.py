"""IEventSource: passive listeners poll, active ones are called back; every listening client sees events."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from vboxsvc.api import LockType, SessionState, VBoxError, VBoxEventType, identity
from vboxsvc.api import errors as rc

from .conftest import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _drain(es, listener):
    out = []
    while (ev := es.get_event(listener, 0)) is not None:
        out.append(ev)
    return out


def test_passive_listeners_each_see_every_event(client, vbox, new_vm):
    es = vbox.event_source
    a, b = es.create_listener(), es.create_listener()
    es.register_listener(a, [VBoxEventType.Any], False)
    es.register_listener(b, [VBoxEventType.OnExtraDataChanged], False)
    with pytest.raises(VBoxError):
        es.register_listener(a, [VBoxEventType.Any], False)  # twice
    assert es.get_event(a, 0) is None
    assert es.get_event(a, 50) is None  # times out, answers None
    m = new_vm()
    vbox.set_extra_data("Test/Key", "1")
    s = client.session()
    m.lock_machine(s, LockType.Write)
    s.unlock_machine()
    got_a = _drain(es, a)
    types = [ev.type for ev in got_a]
    assert VBoxEventType.OnMachineRegistered in types and VBoxEventType.OnExtraDataChanged in types
    states = [ev.state for ev in got_a if ev.type == VBoxEventType.OnSessionStateChanged]
    assert states[0] == SessionState.Locked and states[-1] == SessionState.Unlocked
    got_b = _drain(es, b)
    assert [(ev.type, ev.machine_id, ev.key, ev.value) for ev in got_b] == \
        [(VBoxEventType.OnExtraDataChanged, "", "Test/Key", "1")]
    vbox.set_extra_data("Test/Key", "")
    es.unregister_listener(a)
    es.unregister_listener(b)
    with pytest.raises(VBoxError) as e:
        es.get_event(a, 0)
    assert e.value.result_code == rc.VBOX_E_OBJECT_NOT_FOUND


def test_events_reach_another_process(client, vbox, new_vm, svc_env):
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {ROOT!r})
        from vboxsvc.ipc.client import connect
        from vboxsvc.api import VBoxEventType
        c = connect()
        es = c.virtualbox.event_source
        l = es.create_listener()
        es.register_listener(l, [VBoxEventType.OnMachineRegistered], False)
        print("listening", flush=True)
        ev = es.get_event(l, 20000)
        print(ev.machine_id if ev else "none", ev.registered if ev else "", flush=True)
        c.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=svc_env.vars())
    try:
        assert proc.stdout.readline().strip() == "listening"
        m = new_vm()
        assert proc.stdout.readline().split() == [m.id, "True"]
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_listeners_of_a_dead_client_are_dropped(client, vbox, new_vm):
    from vboxsvc.ipc.client import connect
    other = connect()
    got = []
    other.subscribe(got.append, [VBoxEventType.OnMachineRegistered])
    new_vm()
    assert wait_for(lambda: len(got) == 1, 5)
    other.close()
    new_vm()  # delivering to the closed client must not disturb anyone
    assert vbox.version == identity.current().version and len(got) == 1


def test_waiting_client_does_not_block_others(client, vbox):
    """A client parked in get_event (or wait_for_completion) holds up nobody: the service answers others."""
    import threading

    from vboxsvc.ipc.client import connect
    other = connect()
    es = other.virtualbox.event_source
    listener = es.create_listener()
    es.register_listener(listener, [VBoxEventType.OnExtraDataChanged], False)
    got = []
    waiter = threading.Thread(target=lambda: got.append(es.get_event(listener, 60000)))
    waiter.start()
    try:
        for i in range(50):
            assert vbox.get_extra_data(f"nothing/{i}") == ""
        assert waiter.is_alive() and got == []  # still parked after all our answers
        vbox.set_extra_data("Test/Wake", "1")
        waiter.join(20)
        assert got and got[0].key == "Test/Wake"
    finally:
        vbox.set_extra_data("Test/Wake", "")
        waiter.join(20)
        other.close()
