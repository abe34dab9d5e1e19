"""The service's shared state: the bus, the VirtualBox singleton and the event source.

All API objects run on the bus thread; worker threads (media operations) come back to it
through `ctx.post`. One module-level instance, set up by `service.Service`.
"""

from __future__ import annotations

from ..api import errors as rc
from ..api.errors import VBoxError


class Context:
    def __init__(self):
        self.bus = None          # ipc.busserver.BusServer
        self.vbox = None         # virtualbox.VirtualBox
        self.events = None       # events.EventSource (IVirtualBox::eventSource)
        self.service = None      # service.Service

    def post(self, fn) -> None:
        self.bus.post(fn)

    def call_later(self, delay_s: float, fn):
        return self.bus.call_later(delay_s, fn)

    def fire(self, event_type: int, **fields) -> None:
        if self.events is not None:
            self.events.fire_internal(event_type, fields)


ctx = Context()


def error(code: int, text: str, interface: str = "", component: str = "") -> VBoxError:
    return VBoxError(code, text, interface, component)


def invalid_arg(text: str) -> VBoxError:
    return VBoxError(rc.E_INVALIDARG, text)
