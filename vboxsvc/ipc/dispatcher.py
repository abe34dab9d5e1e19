"""Calls on local objects, driven by the schema: the one place that turns a bus request into a call.

The service and every client that exports objects (the VM process with its IConsole) use
this: the object table hands out references, and `invoke` checks that the member exists in
the object's interface, that the arguments match the schema's types (enums become IntEnums,
references must name the right interface), then calls the Python member and returns its
result or raises VBoxError. Only schema members are reachable, never other attributes.
"""

from __future__ import annotations

import _thread  # threading's Lock, without importing threading
import itertools

from ..api import errors as rc
from ..api.errors import VBoxError
from ..api.schema import INTERFACES, Method, Type
from .wire import KIND_CALL, KIND_GET, KIND_SET, Ref, contains_earlier

GET, SET, CALL = KIND_GET, KIND_SET, KIND_CALL


class Deferred:
    """A result that arrives later (a forwarded call, a wait on progress or events); resolved once."""

    __slots__ = ("_done", "_value", "_error", "_callbacks")

    def __init__(self):
        self._done = False
        self._value = None
        self._error: VBoxError | None = None
        self._callbacks = []

    @property
    def done(self) -> bool:
        return self._done

    def resolve(self, value=None) -> None:
        self._finish(value, None)

    def fail(self, error: VBoxError) -> None:
        self._finish(None, error)

    def _finish(self, value, error) -> None:
        if self._done:
            return
        self._done, self._value, self._error = True, value, error
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb(value, error)

    def add_callback(self, cb) -> None:
        """cb(value, error) once resolved (at once if it already is)."""
        if self._done:
            cb(self._value, self._error)
        else:
            self._callbacks.append(cb)


class RemoteRef(Ref):
    """A reference, seen by the service, to an object living in a client process."""

    __slots__ = ()


class ObjectTable:
    """oid <-> object for the objects this process owns; objects may be tagged to drop them together."""

    def __init__(self, owner: bytes):
        self.owner = owner
        self._by_oid: dict[int, object] = {}
        self._oid_of: dict[int, int] = {}
        self._tags: dict[object, set[int]] = {}
        self._ids = itertools.count(1)
        self._lock = _thread.allocate_lock()

    def ref(self, obj, tag=None) -> Ref:
        iface = getattr(obj, "__interface__", None)
        if iface is None:
            raise TypeError(f"{type(obj).__name__} is not an API object")
        with self._lock:
            oid = self._oid_of.get(id(obj))
            if oid is None:
                oid = next(self._ids)
                self._oid_of[id(obj)] = oid
                self._by_oid[oid] = obj
                tag = tag if tag is not None else getattr(obj, "__bus_tag__", None)
                if tag is not None:
                    self._tags.setdefault(tag, set()).add(oid)
        return Ref(self.owner, oid, iface)

    def get(self, oid: int):
        return self._by_oid.get(oid)

    def drop(self, obj) -> None:
        with self._lock:
            oid = self._oid_of.pop(id(obj), None)
            if oid is not None:
                self._by_oid.pop(oid, None)

    def rebind(self, old, new) -> None:
        """`new` answers under `old`'s reference from now on (`old` leaves the table)."""
        with self._lock:
            oid = self._oid_of.pop(id(old), None)
            if oid is None:
                return
            self._by_oid[oid] = new
            self._oid_of.setdefault(id(new), oid)

    def drop_tag(self, tag) -> None:
        with self._lock:
            for oid in self._tags.pop(tag, ()):
                obj = self._by_oid.pop(oid, None)
                if obj is not None:
                    self._oid_of.pop(id(obj), None)

    def __len__(self) -> int:
        return len(self._by_oid)


def _bad(text: str) -> VBoxError:
    return VBoxError(rc.E_INVALIDARG, text, "", "")


def check_value(t: Type, value, what: str):
    """Validate and normalise one value against a schema type (raises E_INVALIDARG)."""
    if t.is_list:
        if not isinstance(value, (list, tuple)):
            raise _bad(f"Argument {what} must be an array of {t.name}")
        elem = Type(t.name)
        return [check_value(elem, v, f"{what}[{i}]") for i, v in enumerate(value)]
    name = t.name
    if name == "str":
        if not isinstance(value, str):
            raise _bad(f"Argument {what} must be a string")
        return value
    if name == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _bad(f"Argument {what} must be an integer")
        return value
    if name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _bad(f"Argument {what} must be a boolean")
    if name == "bytes":
        if not isinstance(value, (bytes, bytearray)):
            raise _bad(f"Argument {what} must be an octet array")
        return bytes(value)
    if name == "any" or name == "float":
        if contains_earlier(value):
            raise _bad(f"Argument {what}: a batch result reference is valid only as a batch entry's "
                       "target or argument")
        return value
    if name == "IEvent":
        from ..api.events import Event

        if not isinstance(value, Event):
            raise _bad(f"Argument {what} must be an IEvent")
        return value
    if t.is_interface:
        if value is None:
            return None
        iface = value.iface if isinstance(value, Ref) else getattr(value, "__interface__", None)
        if iface != name:
            raise _bad(f"Argument {what} must be an {name} object (got {iface or type(value).__name__})")
        return value
    enum = t.enum
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"Argument {what} must be a {name} value")
    try:
        return enum(value)
    except ValueError:
        raise _bad(f"Invalid {name} value {value} for argument {what}") from None


def bind_args(m: Method, args, kwargs) -> list:
    """Positional + keyword arguments -> the full checked positional list (defaults filled in)."""
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise _bad("malformed argument list")
    params = m.params
    if len(args) > len(params):
        raise _bad(f"{m.interface}::{m.xidl} takes {len(params)} arguments, {len(args)} given")
    out = list(args)
    for p in params[len(args):]:
        if p.name in kwargs:
            out.append(kwargs.pop(p.name))
        elif p.has_default:
            out.append(list(p.default) if isinstance(p.default, list) else p.default)
        else:
            raise _bad(f"{m.interface}::{m.xidl}: missing argument '{p.name}'")
    if kwargs:
        raise _bad(f"{m.interface}::{m.xidl}: unexpected argument(s) {', '.join(map(str, kwargs))}")
    return [check_value(p.type, v, p.name) for p, v in zip(params, out, strict=True)]


def invoke(obj, kind: int, member: str, args=(), kwargs=None):
    """Run one schema member on a local object; returns its result (maybe a Deferred) or raises VBoxError."""
    iface_name = getattr(obj, "__interface__", None)
    iface = INTERFACES.get(iface_name)
    if iface is None:
        raise VBoxError(rc.E_UNEXPECTED, f"object has no known interface ({iface_name})")
    if not isinstance(member, str):
        raise _bad("member name must be a string")
    try:
        if kind == CALL:
            m = iface.methods.get(member)
            if m is None:
                raise VBoxError(rc.E_NOTIMPL, f"{iface_name} has no method '{member}'", iface_name, "")
            bound = bind_args(m, args, dict(kwargs or {}))
            return getattr(obj, member)(*bound)
        a = iface.attributes.get(member)
        if a is None:
            raise VBoxError(rc.E_NOTIMPL, f"{iface_name} has no attribute '{member}'", iface_name, "")
        if kind == GET:
            return getattr(obj, member)
        if kind == SET:
            if a.readonly:
                raise _bad(f"Attribute '{member}' of {iface_name} is read-only")
            if not isinstance(args, (list, tuple)) or len(args) != 1:
                raise _bad(f"setting '{member}' takes one value")
            setattr(obj, member, check_value(a.type, args[0], member))
            return None
        raise _bad(f"unknown call kind {kind!r}")
    except VBoxError as e:
        if not e.interface:
            e.interface = iface_name
        if not e.component:
            e.component = getattr(obj, "__component__", iface_name[1:] + "Wrap")
        raise
    except Exception as e:  # a bug in an implementation must not take the process down
        import logging

        logging.getLogger("vboxsvc.dispatch").exception("internal error in %s.%s", iface_name, member)
        raise VBoxError(rc.E_FAIL, f"Internal error in {iface_name}::{member}: {type(e).__name__}: {e}",
                        iface_name, getattr(obj, "__component__", "")) from None
