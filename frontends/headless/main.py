"""`vboxheadless --startvm <uuid|name>` (VirtualBox's VBoxHeadless): the VM process.

Started by the service for `startvm --type headless` / launchVMProcess (then stdout is the
machine's Logs/VBox.log and VBOXPY_LAUNCH_TOKEN lets it take the VM lock), or by hand in the
foreground: then it writes Logs/VBox.log itself, prints a few lines on the terminal and runs
until the VM stops; Ctrl-C (SIGINT), SIGTERM and SIGHUP power the VM off.  VirtualBox's
--vrde/--capture options are accepted and ignored (the VRDE server follows the machine's
settings).  A fatal error in native code leaves every thread's Python stack in the log.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import logging.handlers
import os
import signal
import sys

from vboxsvc.api import MachineState, VBoxError
from vboxsvc.ipc.client import connect

from . import vmlog
from .vmprocess import VmProcess, start_error_text

log = logging.getLogger("vboxpy.headless")
PROG = "VBoxHeadless"
HEADLESS_VERSION = "7.1.6"   # the VirtualBox release vboxpy follows (as IVirtualBox.version)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=PROG, allow_abbrev=False,
                                 description="Runs a virtual machine without a display (vboxpy).")
    ap.add_argument("-s", "--startvm", "-startvm", dest="startvm", required=True, metavar="<name|uuid>",
                    help="the virtual machine to run")
    ap.add_argument("--comment", "-comment", metavar="<text>", help="ignored (identifies the process in ps)")
    ap.add_argument("-v", "--vrde", "-vrde", "--vnc", metavar="on|off|config",
                    help="accepted, ignored: no VRDE")
    ap.add_argument("-e", "--vrdeproperty", "-vrdeproperty", action="append", default=[],
                    metavar="<name=value>",
                    help="accepted, ignored")
    ap.add_argument("--settingspw", metavar="<pw>", help="accepted, ignored: settings are not encrypted")
    ap.add_argument("--settingspwfile", metavar="<file>", help="accepted, ignored")
    ap.add_argument("-c", "--capture", "-capture", "--record", action="store_true", help="accepted, ignored")
    ap.add_argument("--start-paused", "-start-paused", "--paused", dest="paused", action="store_true",
                    help="power up, then pause at once")
    return ap.parse_args(argv)


def engine_libraries() -> list[str]:
    """What the execution engines run on (REM: which unicorn library, ours or a stock one)."""
    try:
        from vmm.rem.qemu_cpu import library_description
        return [f"REM: {library_description()}"]
    except Exception as e:          # no unicorn at all: say so, --version must still answer
        return [f"REM: unavailable ({e})"]


def version_text(verbose: bool) -> str:
    lines = [f"vboxpy VirtualBox Headless Interface {HEADLESS_VERSION}"]
    return "\n".join(lines + (engine_libraries() if verbose else []))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--version" in argv or "-V" in argv:
        print(version_text("--verbose" in argv))
        return 0
    args = parse_args(argv)
    launched = bool(os.environ.get("VBOXPY_LAUNCH_TOKEN"))
    faulthandler.enable()   # stderr: VBox.log when launched, the terminal by hand
    out = sys.stdout
    say = (lambda text: None) if launched else (lambda text: print(text, file=out, flush=True))
    # launched: stdout is VBox.log; by hand: keep the lines until we own the machine's log file
    buffer = logging.handlers.MemoryHandler(10_000, flushLevel=logging.CRITICAL + 1)
    vmlog.use(vmlog.stream_handler(sys.stdout) if launched else vmlog.formatted(buffer))
    try:
        client = connect(name="vboxheadless")
    except (VBoxError, OSError) as e:
        print(f"{PROG}: error: cannot reach the VirtualBox service: {e}", file=sys.stderr)
        return 1
    version = _version(client)
    print(f"vboxpy VirtualBox Headless Interface {version}\n(a Python re-implementation of Oracle VM "
          f"VirtualBox's VBoxHeadless)\n", file=out, flush=True)
    vmlog.header(log, version)
    ignored = [f"--{k} {v}" for k, v in (("vrde", args.vrde), ("settingspw", args.settingspw and "***"),
                                       ("settingspwfile", args.settingspwfile)) if v]
    ignored += [f"--vrdeproperty {p}" for p in args.vrdeproperty] + (["--capture"] if args.capture else [])
    if ignored:
        log.info("Ignored options (no VRDE/recording in vboxpy): %s", " ".join(ignored))
    vp = VmProcess(client, args.startvm, say)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _f: vp.request_power_off(f"{signal.Signals(signum).name} received"))
    signal.signal(signal.SIGUSR1, lambda _s, _f: vp.log_debug_info())   # `kill -USR1`: live state to VBox.log
    code = 0
    started = False
    try:
        vp.open()
        if not launched:
            _log_to_file(vp, buffer)
        vp.build()
        vp.power_up()
        started = True
        vp.watch_service()
        if args.paused:
            vp.pause()
        say(f"VM '{vp.settings.name}' is {vp.state.name.lower()} ({vp.vm.engine_name}). "
            "Ctrl-C powers it off.")
        how = vp.run()
        log.info("VM process ends: %s", how)
        say(f"VM '{vp.settings.name}' {'saved its state' if how == 'state saved' else 'powered off'}.")
    except Exception as e:
        code = 1
        text = start_error_text(e)
        if started:
            log.exception("VM process error: %s", text)
        else:
            log.error("Failed to start VM '%s': %s", vp.settings.name if vp.settings else args.startvm, text)
        if not launched:
            print(f"{PROG}: error: {text}", file=sys.stderr)
        _reset_state(vp)
    finally:
        try:
            vp.close()
        except Exception as e:      # closing must not hide how the VM ended
            log.warning("cleanup: %s", e)
        vp.client.close()
        logging.shutdown()
    return code


def _version(client) -> str:
    try:
        return str(client.virtualbox.version)
    except VBoxError:
        return "?"


def _log_to_file(vp: VmProcess, buffer: logging.handlers.MemoryHandler) -> None:
    """Foreground: now that the VM lock is ours, rotate Logs/VBox.log and write the log there."""
    keep = int(vp.client.virtualbox.system_properties.log_history_count)
    path = vmlog.rotate(str(vp.sm.log_folder), keep)
    handler = vmlog.file_handler(path)
    buffer.setTarget(handler)
    buffer.flush()
    vmlog.use(handler)
    vp.say(f"Log: {path}")


def _reset_state(vp: VmProcess) -> None:
    """A start that failed half-way leaves the machine powered off (a bad saved state keeps Saved)."""
    if vp.sm is None or vp.state not in (MachineState.Starting, MachineState.Running):
        return
    try:
        if vp.vm is not None:
            vp.vm.power_off()
            vp.vm.wait(5)
        if vp.state == MachineState.Running:
            vp.report(MachineState.Stopping)
        vp.report(MachineState.PoweredOff)
    except VBoxError as e:
        log.warning("could not report the failed start: %s", e.text)


if __name__ == "__main__":
    sys.exit(main())
