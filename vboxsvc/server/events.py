"""IEventSource and passive IEventListener: every listening client sees every event.

Passive listeners (created with create_listener) queue events until the client polls with
get_event (answered at once, or when an event arrives, or at the timeout). Active listeners
are objects exported by a client: the service calls their handle_event over the bus, in
order; a listener whose process is gone is dropped.
"""

from __future__ import annotations

import collections
import itertools
import logging

from ..api import errors as rc
from ..api.errors import VBoxError
from ..api.events import Event, matches
from ..ipc.dispatcher import CALL, Deferred, RemoteRef
from .context import ctx

log = logging.getLogger("vboxsvc.events")

QUEUE_LIMIT = 10_000
_serial = itertools.count(1)


class Listener:
    """A passive listener living in the service."""

    __interface__ = "IEventListener"

    def __init__(self, tag=None):
        self.__bus_tag__ = tag
        self.queue: collections.deque[Event] = collections.deque()
        self.waiter: Deferred | None = None
        self.overflowed = 0

    def handle_event(self, event: Event) -> None:
        self.deliver(event)

    def deliver(self, event: Event) -> None:
        if self.waiter is not None and not self.waiter.done:
            w, self.waiter = self.waiter, None
            w.resolve(event)
            return
        if len(self.queue) >= QUEUE_LIMIT:
            self.queue.popleft()
            self.overflowed += 1
        self.queue.append(event)


class _Registration:
    __slots__ = ("listener", "interesting", "active", "owner")

    def __init__(self, listener, interesting, active, owner):
        self.listener, self.interesting, self.active, self.owner = listener, interesting, active, owner


class EventSource:
    __interface__ = "IEventSource"
    __component__ = "EventSourceWrap"

    def __init__(self):
        self._regs: list[_Registration] = []

    # --- API ------------------------------------------------------------------------------
    def create_listener(self):
        from ..ipc.busserver import current_client
        client = current_client()
        return Listener(tag=client.sid if client else None)

    def register_listener(self, listener, interesting, active: bool) -> None:
        if listener is None:
            raise VBoxError(rc.E_INVALIDARG, "Argument listener is NULL")
        if self._find(listener) is not None:
            raise VBoxError(rc.E_INVALIDARG, "This listener already registered")
        if active and not isinstance(listener, RemoteRef) and not isinstance(listener, Listener):
            raise VBoxError(rc.E_INVALIDARG, "Active listeners must be objects exported by a client")
        if not active and isinstance(listener, RemoteRef):
            raise VBoxError(rc.E_INVALIDARG,
                            "A passive listener must be created with IEventSource::createListener")
        from ..ipc.busserver import current_client
        client = current_client()
        owner = listener.owner if isinstance(listener, RemoteRef) else (client.sid if client else None)
        self._regs.append(_Registration(listener, list(interesting), active, owner))

    def unregister_listener(self, listener) -> None:
        reg = self._find(listener)
        if reg is None:
            raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND, "Listener was never registered")
        self._regs.remove(reg)
        if isinstance(reg.listener, Listener) and reg.listener.waiter is not None:
            reg.listener.waiter.resolve(None)

    def fire_event(self, event: Event, timeout: int = 0) -> bool:
        self._dispatch(Event(event.type, dict(event.fields), id=next(_serial), waitable=False, source=self))
        return True

    def get_event(self, listener, timeout: int):
        reg = self._find(listener)
        if reg is None or not isinstance(listener, Listener):
            raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND, "Listener was never registered")
        if reg.active:
            raise VBoxError(rc.E_INVALIDARG, "Only passive listeners can be polled")
        if listener.queue:
            return listener.queue.popleft()
        if timeout == 0:
            return None
        if listener.waiter is not None and not listener.waiter.done:
            listener.waiter.resolve(None)  # a second poller replaces the first
        d = Deferred()
        listener.waiter = d
        if timeout > 0:
            ctx.call_later(timeout / 1000, lambda: d.resolve(None))
        return d

    def event_processed(self, listener, event) -> None:
        if self._find(listener) is None:
            raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND, "Listener was never registered")

    # --- service side -----------------------------------------------------------------------
    def fire_internal(self, event_type: int, fields: dict) -> None:
        self._dispatch(Event(event_type, fields, id=next(_serial), source=self))

    def _dispatch(self, event: Event) -> None:
        for reg in list(self._regs):
            if not matches(reg.interesting, event.type):
                continue
            if isinstance(reg.listener, RemoteRef):
                d = ctx.bus.call_remote(reg.listener, CALL, "handle_event", [event])
                d.add_callback(lambda _v, err, reg=reg: self._delivery_failed(reg, err) if err else None)
            else:
                reg.listener.deliver(event)

    def _delivery_failed(self, reg: _Registration, err: VBoxError) -> None:
        if err.result_code == rc.NS_ERROR_CALL_FAILED and reg in self._regs:
            self._regs.remove(reg)  # the listener's process is gone
        else:
            log.info("listener failed to handle an event: %s", err.text)

    def _find(self, listener) -> _Registration | None:
        for reg in self._regs:
            if reg.listener is listener or (isinstance(listener, RemoteRef) and reg.listener == listener):
                return reg
        return None

    def drop_owner(self, sid: bytes) -> None:
        """A client went away: forget its listeners."""
        for reg in [r for r in self._regs if r.owner == sid]:
            self._regs.remove(reg)
