"""The prefetch plans name members of the schema, of the kind they are read as: prefetch sends
them as they are, so a plan naming a member the schema lacks would read an error instead."""

from __future__ import annotations

import types

from frontends.vboxmanage.vminfo import plans
from vboxsvc.ipc.proxy import PROXIES, member

VBOX = object()  # what plans() gets as the IVirtualBox to ask for the OS type's description


def test_plan_members_are_schema_members_of_their_kind():
    bad = []
    for iface, plan in plans(VBOX, console=True).items():
        cls = PROXIES[iface]
        bad += [f"{iface}.{a} is not an attribute" for a in plan.attrs
                if not isinstance(member(cls, a), property)]
        bad += [f"{iface}.{m}() is not a method" for m, _args in plan.calls if not callable(member(cls, m))]
    assert not bad, "\n".join(bad)


def test_later_calls_are_schema_methods_of_their_target():
    fetched = types.SimpleNamespace(vrde_properties=["TCPPorts", "TCPAddress"], os_type_id="Debian_64")
    seen = 0
    for iface, plan in plans(VBOX, console=True).items():
        if plan.later is None:
            continue
        for entry in plan.later(fetched):
            target_iface, (name, args) = (iface, entry) if len(entry) == 2 else ("IVirtualBox", entry[1:])
            if len(entry) == 3:
                assert entry[0] is VBOX
            assert callable(member(PROXIES[target_iface], name)), (iface, entry)
            assert isinstance(args, tuple)
            seen += 1
    assert seen == 3  # two VRDE properties and the OS type
