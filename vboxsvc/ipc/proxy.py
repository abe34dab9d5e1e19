"""Client-side proxy classes, generated from the schema (one class per interface).

`proxy.attr` reads an attribute, `proxy.attr = v` sets it, `proxy.method(...)` calls; results
typed as enums come back as IntEnums, object references as proxies. Nothing here is written
by hand per interface, so the proxies always match the schema the service dispatches on.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..api.schema import INTERFACES, SCALARS, Interface, Type
from .dispatcher import CALL, GET, SET
from .wire import Ref


class Proxy:
    """Base of all proxies: a reference plus the connection that carries calls on it."""

    __slots__ = ("_conn", "_ref")
    __interface__ = ""

    def __init__(self, conn, ref: Ref):
        self._conn = conn
        self._ref = ref

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


def _make(iface: Interface) -> type:
    ns: dict = {"__slots__": (), "__interface__": iface.name}
    for a in iface.attributes.values():
        ns[a.name] = _attr(a.name, a.type, a.readonly)
    for m in iface.methods.values():
        sig = ", ".join(f"{p.name}: {p.type}" + (f" = {p.default!r}" if p.has_default else "") for p in m.params)
        ns[m.name] = _method(m.name, m.returns, f"{iface.name}::{m.xidl}({sig})" +
                             (f" -> {m.returns}" if m.returns else ""))
    return type(iface.name, (Proxy,), ns)


class _Proxies(Mapping):
    """Interface name -> proxy class, built on first use."""

    def __init__(self):
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        cls = self._made.get(name)
        if cls is None:
            cls = self._made[name] = _make(INTERFACES[name])
        return cls

    def __iter__(self):
        return iter(INTERFACES)

    def __len__(self) -> int:
        return len(INTERFACES)


PROXIES: Mapping[str, type] = _Proxies()


_CONVERTERS: dict[tuple[str, int, str], object] = {}


def convert(iface: str, kind: int, member: str, value):
    """A raw result of `member` as the proxy would return it (enums as IntEnums)."""
    key = (iface, kind, member)
    conv = _CONVERTERS.get(key, False)
    if conv is False:
        spec = INTERFACES.get(iface)
        conv = None
        if spec is not None:
            if kind == GET and member in spec.attributes:
                conv = _converter(spec.attributes[member].type)
            elif kind == CALL and member in spec.methods:
                conv = _converter(spec.methods[member].returns)
        _CONVERTERS[key] = conv
    return value if conv is None else conv(value)


def make_proxy(conn, ref: Ref) -> Proxy:
    try:
        cls = PROXIES[ref.iface]
    except KeyError:
        cls = Proxy
    return cls(conn, ref)
