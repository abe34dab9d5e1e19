"""`VBoxManage guestproperty get|set|delete|unset|enumerate|wait` (VBoxManageGuestProp.cpp).

Each subcommand finds the machine, takes a Shared lock (which reaches the VM process's store when
the VM runs) and calls IMachine's guest property methods; `wait` listens for
OnGuestPropertyChanged of that machine until a name matches or the timeout passes.
"""

import sys
import time

import click

from vboxsvc.api import guestprop as gp

from .api import Api, call, find_machine, locked
from .cli import CONTEXT
from .output import EXIT_SYNTAX, SyntaxFailure, error

_FILE = "VBoxManageGuestProp.cpp"
_CMD = "guestproperty"
_WAIT_SLICE_MS = 1000    # the wait loop polls its listener in slices, as VBoxManage does


@click.command("guestproperty", context_settings=dict(CONTEXT, ignore_unknown_options=True))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def guestproperty(args):
    if not args:
        raise SyntaxFailure("No subcommand specified", _CMD)
    sub, rest = args[0], list(args[1:])
    if sub == "get":
        return _get(rest)
    if sub == "set":
        return _set(rest)
    if sub in ("delete", "unset"):
        return _delete(rest)
    if sub in ("enumerate", "enum"):
        return _enumerate(rest)
    if sub == "wait":
        return _wait(rest)
    raise SyntaxFailure(f'Unknown subcommand "{sub}"', _CMD)


def _get(args: list[str]) -> int:
    verbose = len(args) == 3 and args[2] in ("--verbose", "-verbose")
    if not verbose and len(args) != 2:
        raise SyntaxFailure("Incorrect parameters", _CMD)
    machine = find_machine(args[0], 80, _FILE)
    with locked(machine, "Shared", "LockMachine(a->session, LockType_Shared)", 84, _FILE) as session:
        with call("GetGuestProperty(Bstr(a->argv[1]).raw(), value.asOutParam(), &i64Timestamp, "
                  "flags.asOutParam())", 93, _FILE):
            value, timestamp, flags = session.machine.get_guest_property(args[1])
    if not value:
        sys.stdout.write("No value set!\n")
        return 0
    sys.stdout.write(f"Value: {value}\n")
    if verbose:
        sys.stdout.write(f"Timestamp: {timestamp}\nFlags: {flags}\n")
    return 0


def _set(args: list[str]) -> int:
    flags = None
    if len(args) == 2:
        value = ""
    elif len(args) == 3:
        value = args[2]
    elif len(args) == 5 and args[3] in ("--flags", "-flags"):
        value, flags = args[2], args[4]
    else:
        raise SyntaxFailure("Incorrect parameters", _CMD)
    machine = find_machine(args[0], 150, _FILE)
    with locked(machine, "Shared", "LockMachine(a->session, LockType_Shared)", 155, _FILE) as session:
        m = session.machine
        if flags is None:
            with call("SetGuestPropertyValue(Bstr(pszName).raw(), Bstr(pszValue).raw())", 162, _FILE):
                m.set_guest_property_value(args[1], value)
        else:
            with call("SetGuestProperty(Bstr(pszName).raw(), Bstr(pszValue).raw(), Bstr(pszFlags).raw())",
                      166, _FILE):
                m.set_guest_property(args[1], value, flags)
        with call("SaveSettings()", 171, _FILE):
            m.save_settings()
    return 0


def _delete(args: list[str]) -> int:
    if len(args) != 2:
        raise SyntaxFailure("Incorrect parameters", _CMD)
    machine = find_machine(args[0], 200, _FILE)
    with locked(machine, "Shared", "LockMachine(a->session, LockType_Shared)", 205, _FILE) as session:
        with call("DeleteGuestProperty(Bstr(pszName).raw())", 211, _FILE):
            session.machine.delete_guest_property(args[1])
        with call("SaveSettings()", 214, _FILE):
            session.machine.save_settings()
    return 0


_ENUM_FLAGS = {"--old-format": ("old", True), "--sort": ("sort", True), "--unsort": ("sort", False),
               "--timestamp": ("ts", True), "--ts": ("ts", True), "--no-timestamp": ("ts", False),
               "--no-ts": ("ts", False), "--abs": ("abs", True), "--absolute": ("abs", True),
               "--rel": ("abs", False), "--relative": ("abs", False), "--flags": ("flags", True),
               "--no-flags": ("flags", False)}


def parse_enumerate(args: list[str]) -> tuple[str | None, list[str], dict]:
    """RTGetOpt over enumerate's options: (vm, patterns, switches)."""
    vm, patterns = None, []
    opts = {"old": False, "sort": True, "ts": True, "abs": True, "flags": True}
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a in ("--patterns", "-patterns"):
            if i >= len(args):
                raise SyntaxFailure(f"Missing the 1st value for option {a}", _CMD)
            patterns.append(args[i])
            i += 1
        elif a in _ENUM_FLAGS:
            key, val = _ENUM_FLAGS[a]
            opts[key] = val
        elif a.startswith("-") and len(a) > 1:
            raise SyntaxFailure(f"Unknown option: {a}", _CMD)
        elif vm is None:
            vm = a
        else:
            patterns.append(a)
    return vm, patterns, opts


def _enumerate(args: list[str]) -> int:
    vm, patterns, opts = parse_enumerate(args)
    if vm is None:
        raise SyntaxFailure("No VM name or UUID was specified", _CMD)
    machine = find_machine(vm, 355, _FILE)
    with locked(machine, "Shared", "LockMachine(a->session, LockType_Shared)", 358, _FILE) as session:
        with call("EnumerateGuestProperties(Bstr(strPatterns).raw(), ComSafeArrayAsOutParam(names), "
                  "ComSafeArrayAsOutParam(values), ComSafeArrayAsOutParam(timestamps), "
                  "ComSafeArrayAsOutParam(flags))", 369, _FILE):
            names, values, stamps, flags = session.machine.enumerate_guest_properties(",".join(patterns))
    sys.stdout.write(render_enumerate(list(zip(names, values, stamps, flags, strict=False)), opts,
                                      time.time_ns()))
    return 0


def render_enumerate(rows: list[tuple[str, str, int, str]], opts: dict, now_ns: int) -> str:
    """The table (default) or `--old-format`'s `Name: ..., value: ..., timestamp: ..., flags: ...` lines."""
    if not rows:
        return "No properties found.\n"
    if opts.get("sort", True):
        rows = sorted(rows, key=lambda r: r[0])
    if opts.get("old"):
        return "".join(f"Name: {n}, value: {v}, timestamp: {t}, flags: {f}\n" for n, v, t, f in rows)
    width_name = min(max([1] + [len(r[0]) for r in rows]), 48)
    width_value = min(max([1] + [len(r[1]) for r in rows]), 28)
    out = []
    for name, value, stamp, flags in rows:
        head = f"{name:<{width_name}} = '{value}'"
        stamp_text = ""
        if opts.get("ts", True):
            stamp_text = "@ " + (_abs_time(stamp) if opts.get("abs", True) else _duration(now_ns - stamp))
        shown_flags = flags if opts.get("flags", True) else ""
        if opts.get("ts", True) or shown_flags:
            width = width_name + width_value + 6
            pad = width - len(head) if len(head) < width else 1
            out.append(f"{head}{' ' * pad}{stamp_text}{' ' if shown_flags else ''}{shown_flags}\n")
        else:
            out.append(head + "\n")
    return "".join(out)


def _abs_time(ns: int) -> str:
    """RTTimeToStringEx with 3 fraction digits: 2024-05-01T12:34:56.789Z."""
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{rest // 1_000_000:03d}Z"


def _duration(ns: int) -> str:
    """RTTimeFormatDurationEx with 3 fraction digits: `1d 02h 03m 04.567s` style, leading zero units
    dropped."""
    ns = max(ns, 0)
    ms_total = ns // 1_000_000
    secs, ms = divmod(ms_total, 1000)
    mins, secs = divmod(secs, 60)
    hours, mins = divmod(mins, 60)
    days, hours = divmod(hours, 24)
    parts = []
    if days:
        parts.append(f"{days}d")
    if days or hours:
        parts.append(f"{hours:02d}h" if parts else f"{hours}h")
    if days or hours or mins:
        parts.append(f"{mins:02d}m" if parts else f"{mins}m")
    parts.append(f"{secs:02d}.{ms:03d}s" if parts else f"{secs}.{ms:03d}s")
    return " ".join(parts)


def _wait(args: list[str]) -> int:
    if len(args) < 2:
        raise SyntaxFailure("Incorrect parameters", _CMD)
    patterns = args[1]
    timeout_ms, fail_on_timeout = None, False
    i = 2
    while i < len(args):
        a = args[i]
        if a in ("--timeout", "-timeout"):
            if i + 1 >= len(args) or not args[i + 1].isdigit() or int(args[i + 1]) > 0xFFFFFFFF:
                raise SyntaxFailure("Incorrect parameters", _CMD)
            timeout_ms = int(args[i + 1])
            i += 2
        elif a == "--fail-on-timeout":
            fail_on_timeout = True
            i += 1
        else:
            raise SyntaxFailure("Incorrect parameters", _CMD)
    machine = find_machine(args[0], 440, _FILE)
    from vboxsvc.api import VBoxEventType

    machine_id = machine.id
    es = Api.vbox().event_source
    with call("CreateListener(listener.asOutParam())", 463, _FILE):
        listener = es.create_listener()
        es.register_listener(listener, [VBoxEventType.OnGuestPropertyChanged], False)
    started = time.monotonic()
    signalled = False
    try:
        while not signalled:
            if timeout_ms is None or timeout_ms == 0xFFFFFFFF:
                wait_ms = _WAIT_SLICE_MS
            else:
                elapsed = int((time.monotonic() - started) * 1000)
                if elapsed >= timeout_ms:
                    break
                wait_ms = min(_WAIT_SLICE_MS, timeout_ms - elapsed)
            ev = es.get_event(listener, wait_ms)
            if ev is None or getattr(ev, "machine_id", "") != machine_id:
                continue
            es.event_processed(listener, ev)
            if not gp.matches(patterns.replace(",", "|"), ev.name):
                continue
            if getattr(ev, "was_deleted", False):
                sys.stdout.write(f"Property {ev.name} was deleted\n")
            else:
                sys.stdout.write(f"Name: {ev.name}, value: {ev.value}, flags: {ev.flags}\n")
            signalled = True
    finally:
        try:
            es.unregister_listener(listener)
        except Exception:
            pass
    if not signalled:
        error("Time out or interruption while waiting for a notification.")
        return EXIT_SYNTAX if fail_on_timeout else 0
    return 0
