"""Client-side proxy classes, generated from the schema (one class per interface).

`proxy.attr` reads an attribute, `proxy.attr = v` sets it, `proxy.method(...)` calls; results
typed as enums come back as IntEnums, object references as proxies. Nothing here is written
by hand per interface, so the proxies always match the schema the service dispatches on.
A class gets each member (a property or a method) from the schema on its first use: a short
client such as `vboxmanage` pays for the dozen members it touches, not for whole interfaces.
"""

from __future__ import annotations

from ..api.schema import INTERFACES, SCALARS, Attribute, LazyMapping, Method, Type
from .wire import KIND_CALL as CALL
from .wire import KIND_GET as GET
from .wire import KIND_SET as SET
from .wire import Ref


class Proxy:
    """Base of all proxies: a reference plus the connection that carries calls on it."""

    __slots__ = ("_conn", "_ref")
    __interface__ = ""

    def __init__(self, conn, ref: Ref):
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_ref", ref)

    def __getattr__(self, name: str):
        # only members the class does not have yet come here: make it from the schema, once
        cls = type(self)
        descriptor = member(cls, name)
        if descriptor is None:
            raise AttributeError(f"'{cls.__name__}' object has no attribute '{name}'")
        return descriptor.__get__(self, cls)

    def __setattr__(self, name: str, value) -> None:
        cls = type(self)
        descriptor = member(cls, name)
        if not isinstance(descriptor, property):
            raise AttributeError(f"'{cls.__name__}' object has no attribute '{name}'")
        descriptor.__set__(self, value)

    def __dir__(self) -> list[str]:
        iface = INTERFACES.get(self.__interface__)
        names = set(iface.attributes) | set(iface.methods) if iface is not None else set()
        return sorted(set(super().__dir__()) | names)

    def __eq__(self, other) -> bool:
        return isinstance(other, Proxy) and other._ref == self._ref

    def __hash__(self) -> int:
        return hash(self._ref)

    def __repr__(self) -> str:
        return f"<{self.__interface__} proxy {self._ref.oid}@{self._ref.owner.hex() or 'vboxsvc'}>"


def _converter(t: Type | None):
    """A function turning a raw result into the schema's type (IntEnums), or None when nothing to do.

    The enum class is looked up on the first result, not when the proxy class is made: a client
    that reads only strings and objects never builds the enumerations."""
    if t is None or t.name in SCALARS or t.is_interface or t.name == "IEvent":
        return None
    enum = None

    def convert(value):
        nonlocal enum
        if value is None:
            return None
        if enum is None:
            enum = t.enum
            if enum is None:
                return value
        if t.is_list:
            return [_enum_or_int(enum, v) for v in value]
        return _enum_or_int(enum, value)
    return convert


def _enum_or_int(enum, v):
    try:
        return enum(v)
    except ValueError:
        return v


def _attr(name: str, t: Type, readonly: bool):
    conv = _converter(t)
    if conv is None:
        def get(self):
            return self._conn.call(self._ref, GET, name, ())
    else:
        def get(self):
            return conv(self._conn.call(self._ref, GET, name, ()))

    if readonly:
        def set_(self, value):
            raise AttributeError(f"attribute '{name}' of {self.__interface__} is read-only")
    else:
        def set_(self, value):
            self._conn.call(self._ref, SET, name, (value,))
    return property(get, set_, doc=f"{name}: {t}")


def _method(name: str, ret: Type | None, doc: str):
    conv = _converter(ret) or (lambda value: value)

    def call(self, *args, **kwargs):
        return conv(self._conn.call(self._ref, CALL, name, args, kwargs))
    call.__name__ = name
    call.__doc__ = doc
    return call


def member(cls: type, name: str):
    """The property or method `name` of proxy class `cls`, made from the schema and set on the class
    on first use; None when the interface has no such member."""
    found = cls.__dict__.get(name)
    if found is not None:
        return found
    if name.startswith("__"):  # the interpreter's own probes (copy, pickle, ...): never schema members
        return None
    spec = INTERFACES.member(cls.__interface__, name) if cls.__interface__ else None
    if isinstance(spec, Method):
        sig = ", ".join(f"{p.name}: {p.type}" + (f" = {p.default!r}" if p.has_default else "")
                        for p in spec.params)
        found = _method(spec.name, spec.returns, f"{cls.__interface__}::{spec.xidl}({sig})" +
                        (f" -> {spec.returns}" if spec.returns else ""))
    elif isinstance(spec, Attribute):
        found = _attr(spec.name, spec.type, spec.readonly)
    else:
        return None
    setattr(cls, name, found)
    return found


def _make(name: str) -> type:
    if name not in INTERFACES:
        raise KeyError(name)
    return type(name, (Proxy,), {"__slots__": (), "__interface__": name})


class _Proxies(LazyMapping):
    """Interface name -> proxy class, built on first use."""

    def __init__(self):
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        cls = self._made.get(name)
        if cls is None:
            cls = self._made[name] = _make(name)
        return cls

    def __iter__(self):
        return iter(INTERFACES)

    def __len__(self) -> int:
        return len(INTERFACES)


PROXIES: LazyMapping = _Proxies()


_CONVERTERS: dict[tuple[str, int, str], object] = {}


def convert(iface: str, kind: int, name: str, value):
    """A raw result of `name` as the proxy would return it (enums as IntEnums)."""
    key = (iface, kind, name)
    conv = _CONVERTERS.get(key, False)
    if conv is False:
        conv = None
        if kind == GET:
            spec = INTERFACES.member(iface, name, Attribute)
            conv = _converter(spec.type) if spec is not None else None
        elif kind == CALL:
            spec = INTERFACES.member(iface, name, Method)
            conv = _converter(spec.returns) if spec is not None else None
        _CONVERTERS[key] = conv
    return value if conv is None else conv(value)


def make_proxy(conn, ref: Ref) -> Proxy:
    try:
        cls = PROXIES[ref.iface]
    except KeyError:
        cls = Proxy
    return cls(conn, ref)
