"""Reads of many API attributes in a few round trips, for commands that print a whole object.

`showvminfo` reads some two hundred attributes of a machine and its parts; one bus round
trip per attribute is most of its run time. `prefetch` reads a tree of objects level by
level, each level in one batch call (Client.batch), following a plan that names, per
interface, the attributes and calls the command will read. It returns `Fetched` stand-ins
that answer those reads from the batch (a failed read raises the very error the lone call
raised) and pass everything else on to the real proxy, so the code reading them is the
same code that reads proxies. Nothing outlives the command run: the service is asked each
time, once.
"""

from __future__ import annotations

from .api import FIND_MACHINE, Api, call

GET, CALL = 1, 0  # vboxsvc.ipc.dispatcher's call kinds (not imported: that module loads the schema)


def batch(calls) -> list:
    """(ok, value or error) per (proxy, kind, member, args), in one round trip. Enum-typed values
    come as plain ints (equal to the IntEnums; the CLI names values itself): building the
    enumeration classes would cost each run more than the round trips it saves."""
    return Api.client().batch(calls, enums=False)


def find_machine_and(name: str, then: tuple, line: int = 0, file: str = "VBoxManage.cpp"):
    """find_machine, and one call `then` = (method, args) on the machine found, in one round trip:
    (machine, (ok, value or VBoxError)). A failed find raises as find_machine does."""
    from vboxsvc.ipc.wire import Earlier

    method, args = then
    with call(FIND_MACHINE, line, file):
        (found, machine), read = batch([(Api.vbox(), CALL, "find_machine", (name,)),
                                        (Earlier(0, "IMachine"), CALL, method, tuple(args))])
        if not found:
            raise machine
    return machine, read


class Plan:
    """What is read of one interface: attributes, calls with fixed arguments, and calls whose
    arguments depend on what the attributes read: `later(fetched)` -> [(method, args)] on the object
    itself, or [(other object, method, args)] on another one (fetched like the rest)."""

    __slots__ = ("attrs", "calls", "later")

    def __init__(self, attrs=(), calls=(), later=None):
        self.attrs = tuple(attrs)
        self.calls = tuple(calls)
        self.later = later


class Fetched:
    """A proxy whose planned reads were done in a batch; other members go to the proxy."""

    __slots__ = ("_proxy", "_got")

    def __init__(self, proxy):
        self._proxy = proxy
        self._got: dict = {}

    def __getattr__(self, name: str):
        got = self._got.get(name)
        if got is not None:
            ok, value = got
            if ok:
                return value
            raise value
        member = getattr(self._proxy, name)
        if callable(member):
            return _Method(self, name, member)
        return member

    def __eq__(self, other) -> bool:
        return self._proxy == (other._proxy if isinstance(other, Fetched) else other)

    def __hash__(self) -> int:
        return hash(self._proxy)


class _Method:
    __slots__ = ("_owner", "_name", "_call")

    def __init__(self, owner: Fetched, name: str, call):
        self._owner, self._name, self._call = owner, name, call

    def __call__(self, *args):
        got = self._owner._got.get((self._name, _key(args)))
        if got is None:
            return self._call(*args)
        ok, value = got
        if ok:
            return value
        raise value


def _key(args) -> tuple:
    return tuple(int(a) if isinstance(a, int) else a for a in args)


def _is_proxy(value) -> bool:
    return hasattr(value, "_ref") and hasattr(type(value), "__interface__")


def prefetch(root, plans: dict[str, Plan], levels: int = 8):
    """`root` and every object reached through planned reads, fetched level by level."""
    return prefetch_all([root], plans, levels)[0]


def prefetch_all(roots: list, plans: dict[str, Plan], levels: int = 8) -> list:
    """Each of `roots` and every object reached through planned reads, fetched level by level: the
    roots' reads share the batches (one round trip per level for all of them). The plans name
    members of the schema (tests/unit/frontends/vboxmanage/test_fetch_plans.py): they are sent as
    they are, without looking each one up."""
    made: dict = {}
    todo: list[tuple[Fetched, str, tuple | None]] = []
    fresh: list[Fetched] = []  # wrapped since the last batch: their attributes are in the next one

    def wrap(proxy):
        if isinstance(proxy, Fetched):
            proxy = proxy._proxy
        fetched = made.get(proxy._ref)
        if fetched is None:
            fetched = made[proxy._ref] = Fetched(proxy)
            plan = plans.get(type(proxy).__interface__)
            if plan is not None:
                todo.extend((fetched, a, None) for a in plan.attrs)
                todo.extend((fetched, m, tuple(args)) for m, args in plan.calls)
                if plan.later is not None:
                    fresh.append(fetched)
        return fetched

    def adopt(value):
        if _is_proxy(value):
            return wrap(value)
        if isinstance(value, list) and value and all(_is_proxy(v) for v in value):
            return [wrap(v) for v in value]
        return value

    tops = [wrap(root) if _is_proxy(root) else root for root in roots]  # local objects (tests' fakes) stay
    ready: list[Fetched] = []  # their attributes have been read: the calls that need them can go
    for _ in range(levels):
        for fetched in ready:
            cls = type(fetched._proxy)
            try:
                extra = plans[cls.__interface__].later(fetched)
            except Exception:
                continue  # what the calls depend on failed: the reader meets that failure itself
            for entry in extra:
                target, (m, args) = (fetched, entry) if len(entry) == 2 else (wrap(entry[0]), entry[1:])
                todo.append((target, m, tuple(args)))
        ready, fresh[:] = list(fresh), []
        if not todo:
            if not ready:
                break
            continue
        work, todo[:] = list(todo), []
        results = batch([(f._proxy, GET if args is None else CALL, name, args or ())
                         for f, name, args in work])
        for (fetched, name, args), (ok, value) in zip(work, results, strict=True):
            fetched._got[name if args is None else (name, _key(args))] = (ok, adopt(value) if ok else value)
    return tops
