"""The schema is the single source: server classes and client proxies must match it exactly."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import vboxsvc.server
from vboxsvc.api import enums
from vboxsvc.api.schema import INTERFACES, parse, snake
from vboxsvc.ipc.proxy import PROXIES
from vboxsvc.ipc.proxy import member as proxy_member

# interfaces the service does not implement itself, and who does
ELSEWHERE = {"IConsole": "the VM process (frontends/headless)",
             "IDisplay": "the VM process (frontends/headless)",
             "IKeyboard": "the VM process (frontends/headless)",
             "IVRDEServerInfo": "the VM process (frontends/headless)"}


def _server_classes() -> dict[str, list[type]]:
    found: dict[str, list[type]] = {}
    for mod in pkgutil.iter_modules(vboxsvc.server.__path__):
        if mod.name in ("main", "quickstart"):  # quickstart's stand-ins: test_quick_stand_ins_answer
            continue
        m = importlib.import_module(f"vboxsvc.server.{mod.name}")
        for _, cls in inspect.getmembers(m, inspect.isclass):
            iface = cls.__dict__.get("__interface__")
            if isinstance(iface, str) and cls.__module__ == m.__name__:
                found.setdefault(iface, []).append(cls)
    return found


def _has_member(cls: type, name: str) -> bool:
    if any(name in vars(k) for k in cls.__mro__):
        return True
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return False
    return re.search(rf"self\.{name}\s*(:[^=]+)?[=,]", src) is not None


def test_snake_case_mapping():
    cases = {"createMachine": "create_machine", "CPUCount": "cpu_count", "OSTypeId": "os_type_id",
             "memorySize": "memory_size", "DVDImages": "dvd_images", "getExtraData": "get_extra_data",
             "launchVMProcess": "launch_vm_process", "HWVirtExProperty": "hw_virt_ex_property",
             "getHWVirtExProperty": "get_hw_virt_ex_property", "MACAddress": "mac_address",
             "IOAPICEnabled": "ioapic_enabled", "VRAMSize": "vram_size", "APIVersion": "api_version",
             "is64Bit": "is64_bit", "acceleration3DAvailable": "acceleration3d_available",
             "recommendedUSBHID": "recommended_usbhid", "RTCUseUTC": "rtc_use_utc"}
    for xidl, py in cases.items():
        assert snake(xidl) == py


def test_contract_names_exist():
    vb, m, s = INTERFACES["IVirtualBox"], INTERFACES["IMachine"], INTERFACES["ISession"]
    for name in ("version", "home_folder", "settings_file_path", "machines", "system_properties", "host",
                 "guest_os_types", "event_source", "hard_disks", "dvd_images", "floppy_images"):
        assert name in vb.attributes
    for name in ("create_machine", "register_machine", "find_machine", "get_extra_data", "set_extra_data",
                 "create_medium", "open_medium", "compose_machine_filename", "open_machine"):
        assert name in vb.methods
    for name in ("lock_machine", "launch_vm_process", "save_settings", "update_state", "unregister",
                 "delete_config", "read_log", "get_effective_paravirt_provider", "attach_device"):
        assert name in m.methods
    assert {"os_type_id", "cpu_count", "memory_size", "state", "session_state"} <= set(m.attributes)
    assert "register_console" in s.methods and "console" in s.attributes
    assert ({"pause", "resume", "reset", "power_button", "power_down", "save_state"}
            <= set(INTERFACES["IConsole"].methods))


def test_every_type_resolves():
    for iface in INTERFACES.values():
        typed = ([(a.name, a.type) for a in iface.attributes.values()]
                 + [(f"{m.name}({p.name})", p.type) for m in iface.methods.values() for p in m.params]
                 + [(f"{m.name}() ->", m.returns) for m in iface.methods.values() if m.returns])
        for what, t in typed:
            assert t.name in ("str", "int", "bool", "bytes", "any", "float", "IEvent") or \
                t.name in INTERFACES or getattr(enums, t.name, None) is not None, (iface.name, what)


def test_quick_stand_ins_answer_only_schema_members_they_have():
    """The quick start's objects answer exactly the members quickstart.ANSWERS names (the bus lets
    no other call reach them), and those members are the schema's."""
    from vboxsvc.server import quickstart

    classes = {cls.__interface__: cls for cls in (quickstart.QuickVirtualBox, quickstart.QuickMachine)}
    for iface, member in quickstart.ANSWERS:
        assert member in INTERFACES[iface].attributes, (iface, member)
        assert _has_member(classes[iface], member), (iface, member)
    assert {i for i, _m in quickstart.ANSWERS} == set(classes)


def test_server_implements_the_schema():
    classes = _server_classes()
    missing = []
    for name, iface in INTERFACES.items():
        if name in ELSEWHERE:
            continue
        impls = classes.get(name)
        if not impls:
            missing.append(f"{name}: no implementation")
            continue
        for cls in impls:
            for member in list(iface.attributes) + list(iface.methods):
                if not _has_member(cls, member):
                    missing.append(f"{cls.__name__} ({name}) lacks {member}")
            for mname in iface.methods:
                attr = inspect.getattr_static(cls, mname, None)
                if attr is not None and not callable(attr):
                    missing.append(f"{cls.__name__}.{mname} is not callable")
    for iface_name in classes:
        if iface_name not in INTERFACES:
            missing.append(f"{iface_name} is implemented but not in the schema")
    assert not missing, "\n".join(missing)


def test_writable_attributes_have_setters():
    bad = []
    for name, impls in _server_classes().items():
        iface = INTERFACES.get(name)
        if iface is None:
            continue
        for cls in impls:
            for a in iface.attributes.values():
                static = inspect.getattr_static(cls, a.name, None)
                if not a.readonly and isinstance(static, property) and static.fset is None:
                    bad.append(f"{cls.__name__}.{a.name} is rw in the schema but has no setter")
    assert not bad, "\n".join(bad)


def test_proxies_are_derived_from_the_schema():
    assert set(PROXIES) == set(INTERFACES)
    for name, iface in INTERFACES.items():
        cls = PROXIES[name]
        for a in iface.attributes:
            if a not in iface.methods:
                assert isinstance(proxy_member(cls, a), property), (name, a)
                assert isinstance(inspect.getattr_static(cls, a), property), (name, a)  # set on the class
        for m in iface.methods:
            assert callable(proxy_member(cls, m)) and callable(inspect.getattr_static(cls, m)), (name, m)
        assert proxy_member(cls, "no_such_member") is None and proxy_member(cls, "__deepcopy__") is None


def test_members_parsed_one_by_one_equal_the_whole_interface():
    from vboxsvc.api.interfaces import SCHEMA_TEXT
    from vboxsvc.api.schema import Attribute, Method, _Interfaces

    lazy, whole = _Interfaces(SCHEMA_TEXT), _Interfaces(SCHEMA_TEXT)
    for name in whole:
        iface = whole[name]
        for a, spec in iface.attributes.items():
            assert lazy.member(name, a, Attribute) == spec, (name, a)
        for m, spec in iface.methods.items():
            assert lazy.member(name, m, Method) == spec and lazy.member(name, m) == spec, (name, m)
        assert lazy.member(name, "no_such_member") is None
    assert lazy.member("INoSuchInterface", "x") is None


def test_proxy_members_behave_as_before():
    cls = PROXIES["IMachine"]
    calls = []

    class Conn:
        def call(self, ref, kind, name, args=(), kwargs=None):
            calls.append((kind, name, tuple(args)))
            return 1

    from vboxsvc.ipc.wire import Ref

    proxy = cls(Conn(), Ref(b"", 1, "IMachine"))
    assert proxy.state == 1 and type(proxy.state).__name__ == "MachineState"
    proxy.memory_size = 256
    with pytest.raises(AttributeError, match="^attribute 'state' of IMachine is read-only$"):
        proxy.state = 2
    with pytest.raises(AttributeError, match="^'IMachine' object has no attribute 'nothing'$"):
        proxy.nothing  # noqa: B018
    with pytest.raises(AttributeError, match="^'IMachine' object has no attribute 'nothing'$"):
        proxy.nothing = 1
    assert proxy.get_extra_data("k") == 1 and "memory_size" in dir(proxy)
    assert calls == [(1, "state", ()), (1, "state", ()), (2, "memory_size", (256,)),
                     (0, "get_extra_data", ("k",))]


def test_parser_rejects_bad_text():
    with pytest.raises(ValueError):
        parse("IFoo:\n    bar: NoSuchType\n")
    with pytest.raises(ValueError):
        parse("IFoo:\n    this is not a member\n")
    ifaces = parse("IFoo:\n    size: int rw\n    doIt(a: str, b: [int] = [1], c: bool = True) -> IFoo\n")
    m = ifaces["IFoo"].methods["do_it"]
    assert [p.name for p in m.params] == ["a", "b", "c"] and m.params[1].default == [1]
    assert m.returns.name == "IFoo" and not ifaces["IFoo"].attributes["size"].readonly


def test_the_vm_process_implements_its_interfaces():
    from frontends.headless.console import HeadlessConsole
    from frontends.headless.display import HeadlessDisplay, HeadlessKeyboard
    from frontends.headless.vrde import VrdeServerInfo
    missing = []
    for cls in (HeadlessConsole, HeadlessDisplay, HeadlessKeyboard, VrdeServerInfo):
        iface = INTERFACES[cls.__interface__]
        missing += [f"{cls.__name__} lacks {m}" for m in list(iface.attributes) + list(iface.methods)
                    if not _has_member(cls, m)]
    assert not missing, "\n".join(missing)
