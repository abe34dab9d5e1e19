"""Event values of the Main API (IEvent and its subinterfaces).

Events travel by value: a client receives an Event with the attributes of the event's
interface (machine_id, state, key, ...), whether it polls a passive listener with
IEventSource.get_event or is called back on an active one.
"""

from __future__ import annotations

from . import enums
from .enums import VBoxEventType as T

# event type -> (interface name, fields, enum type per field)
EVENT_TYPES: dict[int, tuple[str, tuple[str, ...]]] = {
    T.OnMachineStateChanged: ("IMachineStateChangedEvent", ("machine_id", "state")),
    T.OnMachineDataChanged: ("IMachineDataChangedEvent", ("machine_id", "temporary")),
    T.OnMachineRegistered: ("IMachineRegisteredEvent", ("machine_id", "registered")),
    T.OnSessionStateChanged: ("ISessionStateChangedEvent", ("machine_id", "state")),
    T.OnExtraDataChanged: ("IExtraDataChangedEvent", ("machine_id", "key", "value")),
    T.OnMediumRegistered: ("IMediumRegisteredEvent", ("medium_id", "medium_type", "registered")),
    T.OnMediumConfigChanged: ("IMediumConfigChangedEvent", ("medium_id",)),
    T.OnSnapshotTaken: ("ISnapshotTakenEvent", ("machine_id", "snapshot_id")),
    T.OnSnapshotDeleted: ("ISnapshotDeletedEvent", ("machine_id", "snapshot_id")),
    T.OnSnapshotChanged: ("ISnapshotChangedEvent", ("machine_id", "snapshot_id")),
    T.OnSnapshotRestored: ("ISnapshotRestoredEvent", ("machine_id", "snapshot_id")),
    T.OnStateChanged: ("IStateChangedEvent", ("state",)),
    T.OnMachineGroupsChanged: ("IMachineGroupsChangedEvent", ("machine_id", "dummy")),
    T.OnProgressTaskCompleted: ("IProgressTaskCompletedEvent",
                                ("progress_id", "midl_does_not_like_empty_interfaces")),
    T.OnProgressPercentageChanged: ("IProgressPercentageChangedEvent", ("progress_id", "percent")),
    T.OnRuntimeError: ("IRuntimeErrorEvent", ("fatal", "id", "message")),
    T.OnGuestPropertyChanged: ("IGuestPropertyChangedEvent",
                               ("machine_id", "name", "value", "flags", "was_deleted")),
}

# wildcard types a listener can subscribe to, and the concrete types each covers
_MACHINE = {T.OnMachineStateChanged, T.OnMachineDataChanged, T.OnMachineRegistered,
            T.OnSessionStateChanged, T.OnExtraDataChanged, T.OnSnapshotTaken, T.OnSnapshotDeleted,
            T.OnSnapshotChanged, T.OnSnapshotRestored, T.OnMachineGroupsChanged, T.OnGuestPropertyChanged}
_SNAPSHOT = {T.OnSnapshotTaken, T.OnSnapshotDeleted, T.OnSnapshotChanged, T.OnSnapshotRestored}
WILDCARDS = {T.Any: None, T.MachineEvent: _MACHINE, T.SnapshotEvent: _SNAPSHOT}

_FIELD_ENUMS = {
    (T.OnMachineStateChanged, "state"): enums.MachineState,
    (T.OnSessionStateChanged, "state"): enums.SessionState,
    (T.OnStateChanged, "state"): enums.MachineState,
    (T.OnMediumRegistered, "medium_type"): enums.DeviceType,
}


def matches(interesting, event_type: int) -> bool:
    """True if a listener registered for `interesting` (types, wildcards) wants `event_type`."""
    for t in interesting:
        if t == event_type or t == T.Any:
            return True
        cover = WILDCARDS.get(t)
        if cover and event_type in cover:
            return True
    return False


class Event:
    """One event: `type` (VBoxEventType), `interface` name, `id` (serial), `waitable` and its fields."""

    __slots__ = ("type", "id", "waitable", "fields", "source")

    def __init__(self, type: int, fields: dict, id: int = 0, waitable: bool = False, source=None):
        self.type = enums.VBoxEventType(type) if type in enums.VBoxEventType._value2member_map_ else type
        spec = EVENT_TYPES.get(type)
        if spec is not None:
            missing = set(spec[1]) - set(fields)
            if missing:
                raise ValueError(f"event {spec[0]} lacks {sorted(missing)}")
        self.fields = {k: (_FIELD_ENUMS[(type, k)](v) if (type, k) in _FIELD_ENUMS else v)
                       for k, v in fields.items()}
        self.id = id
        self.waitable = waitable
        self.source = source

    @property
    def interface(self) -> str:
        spec = EVENT_TYPES.get(self.type)
        return spec[0] if spec else "IEvent"

    def __getattr__(self, name: str):
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_wire(self) -> list:
        return [int(self.type), self.id, self.waitable, dict(self.fields)]

    @classmethod
    def from_wire(cls, data) -> Event:
        if not isinstance(data, list) or len(data) != 4 or not isinstance(data[3], dict):
            raise ValueError("malformed event")
        return cls(data[0], data[3], id=data[1], waitable=data[2])

    def __repr__(self) -> str:
        return f"<{self.interface} {self.fields}>"
