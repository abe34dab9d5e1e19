"""Entry point of `vboxmanage` / `VBoxManage`: VBoxManage's process-level behaviour.

Global options, version, help and command lookup run before click is imported, and
only the module of the command asked for is loaded, so a fresh `vboxmanage list vms`
starts fast.  Failures become VBoxManage's stderr text and exit codes here (VBoxManage.cpp's
RTEXITCODE use, glue/errorprint.cpp).
Shell completion (click's): `eval "$(_VBOXMANAGE_COMPLETE=bash_source vboxmanage)"`
(zsh_source / fish_source for the other shells); VM names complete from the service.
"""

import os
import sys

from .output import (
    EXIT_FAILURE,
    EXIT_SUCCESS,
    EXIT_SYNTAX,
    PROG,
    ArgumentFailure,
    CommandFailed,
    State,
    SyntaxFailure,
    error,
    logo,
    show_logo,
    version_text,
)
from .usage import ALIASES, USAGE, full_usage, usage

# command -> module (frontends.vboxmanage.cmd_<module>); attribute = command name (or name_)
COMMANDS = {
    "list": "list", "showvminfo": "showvminfo",
    "createvm": "vm", "registervm": "vm", "unregistervm": "vm",
    "modifyvm": "modifyvm", "storagectl": "storage", "storageattach": "storage",
    "createmedium": "medium", "closemedium": "medium", "showmediuminfo": "medium",
    "clonemedium": "medium", "modifymedium": "medium", "convertfromraw": "medium",
    "import": "appliance", "export": "appliance",
    "startvm": "control", "controlvm": "control", "discardstate": "control",
    "snapshot": "snapshot", "clonevm": "clonevm",
    "getextradata": "extradata", "setextradata": "extradata", "setproperty": "extradata",
    "guestproperty": "guestproperty", "sharedfolder": "sharedfolder",
}
VERSION_FLAGS = ("-V", "--version", "-v", "-version", "-Version")
HELP_WORDS = ("help", "--help", "-h", "-?", "-help")


def canonical(name: str) -> str | None:
    name = ALIASES.get(name, name)
    return name if name in COMMANDS else None


def _module(name: str):
    """frontends.vboxmanage.<name>, imported now (__import__: importlib would be loaded for this alone)."""
    full = f"{__package__}.{name}"
    __import__(full)
    return sys.modules[full]


def load(name: str):
    """Import the module of `name` only now and return its click command."""
    module = _module(f"cmd_{COMMANDS[name]}")
    return getattr(module, name, None) or getattr(module, name + "_")  # list_ avoids the builtin


def build_group():
    """A click group over all commands, loading each lazily (dispatch and shell completion)."""
    import click

    class LazyGroup(click.Group):
        def list_commands(self, ctx):
            return sorted(COMMANDS) + sorted(ALIASES)

        def get_command(self, ctx, cmd_name):
            real = canonical(cmd_name)
            return load(real) if real else None

    return LazyGroup(name=PROG, context_settings={"help_option_names": []})


def _expand_response_file(args: list[str]) -> list[str]:
    import shlex

    out, used = [], False
    for arg in args:
        if arg.startswith("@") and len(arg) > 1 and not used:
            used = True
            with open(arg[1:], encoding="utf-8") as handle:
                out += shlex.split(handle.read(), comments=True)
        else:
            out.append(arg)
    return out


def _global_options(args: list[str]) -> tuple[list[str], int | None]:
    """Strip VBoxManage's global options; returns (rest, exit code if the run ends here)."""
    while args:
        arg = args[0]
        if arg in ("--nologo", "-q", "-nologo"):
            State.nologo = True
        elif arg in ("--detailed-progress", "-d"):
            State.detailed_progress = True
        elif arg in ("--settingspw", "--settingspwfile"):
            if len(args) < 2:
                error(f"Missing the 1st value for option {arg}")
                return [], EXIT_SYNTAX
            args = args[1:]
        elif arg in VERSION_FLAGS:
            sys.stdout.write(version_text() + "\n")
            return [], EXIT_SUCCESS
        elif arg == "--dump-build-type":
            sys.stdout.write("release\n")
            return [], EXIT_SUCCESS
        elif arg.startswith("@") and len(arg) > 1:
            try:
                args = _expand_response_file(args)
            except OSError as exc:
                error(f"Failed to open response file '{arg[1:]}': {exc.strerror}")
                return [], EXIT_FAILURE
            continue
        else:
            break
        args = args[1:]
    return args, None


def run(args: list[str]) -> int:
    complete_var = "_VBOXMANAGE_COMPLETE"
    if os.environ.get(complete_var):
        return build_group().main(args, prog_name="vboxmanage", complete_var=complete_var,
                                  standalone_mode=False) or 0
    args, done = _global_options(args)
    if done is not None:
        return done
    if not args:
        sys.stdout.write(logo() + "\n" + full_usage())
        return EXIT_SUCCESS
    word = args[0]
    if word in HELP_WORDS:
        target = canonical(args[1]) if len(args) > 1 else None
        if target:
            sys.stdout.write(logo() + "\n" + usage(target))
            return EXIT_FAILURE
        sys.stdout.write(logo() + "\n" + full_usage())
        return EXIT_SUCCESS
    if word == "commands":
        sys.stdout.write("commands:\n" + "".join(f"    {c}\n" for c in list(USAGE) + list(ALIASES)))
        return EXIT_SUCCESS
    name = canonical(word)
    if name is None:
        show_logo(sys.stderr)
        error(f"Invalid command '{word}'")
        return EXIT_SYNTAX
    rest = args[1:]
    if not rest:
        sys.stdout.write(usage(name))
        return EXIT_FAILURE
    if any(a in ("--help", "-h", "-?") for a in rest):
        sys.stdout.write(usage(name))
        return EXIT_SUCCESS
    return _dispatch(name, rest)


def _dispatch(name: str, rest: list[str]) -> int:
    from .api import Api

    try:
        from vboxsvc.ipc import autostart

        autostart.start_early()
        return _invoke(name, rest)
    except SyntaxFailure as exc:
        return _syntax(exc.text, exc.command or name)
    except ArgumentFailure as exc:
        error(exc.text)
        return EXIT_SYNTAX
    except CommandFailed as exc:
        if exc.text:
            sys.stderr.write(exc.text)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:
        from .api import error_block, is_api_error

        if is_api_error(exc):  # an API error outside any call() context: still VBoxManage's block
            sys.stderr.write(error_block(exc, ""))
            return EXIT_FAILURE
        click = sys.modules.get("click")  # only loaded when a click command ran
        if click is not None and isinstance(exc, click.UsageError):
            return _syntax(click_message(exc), name)
        if click is not None and isinstance(exc, click.Abort):
            return EXIT_FAILURE
        raise
    finally:
        Api.close()


# command -> module with `fast(rest)`: the plain forms tools call again and again, run without click
# (None from fast() when the arguments need the full parser)
FAST = {"list": "listing", "showvminfo": "showvminfo", "getextradata": "extradata"}


def _invoke(name: str, rest: list[str]) -> int:
    if name in FAST:
        result = _module(FAST[name]).fast(rest)
        if result is not None:
            return result
    command = load(name)
    return int(command.main(rest, prog_name=f"{PROG} {name}", standalone_mode=False) or 0)


def click_message(exc) -> str:
    """click's usage errors in RTGetOpt's words."""
    import re

    import click

    if isinstance(exc, click.NoSuchOption):
        return f"Unknown option: {exc.option_name}"
    text = exc.format_message()
    if isinstance(exc, click.BadOptionUsage) and "requires" in text:
        return f"Missing the 1st value for option {exc.option_name}"
    match = re.match(r"Got unexpected extra arguments? \((.*)\)", text)
    if match:
        return f"Invalid parameter '{match.group(1).split(' ')[0]}'"
    if isinstance(exc, click.MissingParameter):
        return "Not enough parameters"
    return text


def _syntax(text: str, name: str) -> int:
    show_logo(sys.stderr)
    error(text)
    sys.stderr.write("\n" + usage(name))
    return EXIT_SYNTAX


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = run(args)
    except BrokenPipeError:
        code = EXIT_FAILURE
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = EXIT_FAILURE
    if argv is None:
        # a command run (launcher, `python -m`): the connection said goodbye in _dispatch and the
        # output is flushed; tearing the interpreter's modules down would cost each run 3-4 ms
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
