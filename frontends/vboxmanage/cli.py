"""Shared click plumbing for the command modules: settings, value parsers, completion.

VBoxManage reports bad values through RTGetOpt's messages and exit 2, so values are
taken as strings and parsed here with those messages instead of click's own types.
"""

import click

from .output import SyntaxFailure

# --help/-h are handled by main (VBoxManage prints its own usage text).
CONTEXT = {"help_option_names": [], "max_content_width": 110}

TRUE_WORDS = ("on", "yes", "true", "1", "enable", "enabled")
FALSE_WORDS = ("off", "no", "false", "0", "disable", "disabled")


def onoff(option: str, value: str, command: str | None = None) -> bool:
    """RTGETOPT_REQ_BOOL_ONOFF."""
    low = value.lower()
    if low == "on":
        return True
    if low == "off":
        return False
    raise SyntaxFailure(f"Invalid boolean value '{value}' for option {option}: expected on or off", command)


def parse_bool(value: str) -> bool | None:
    """parseBool of VBoxManageDisk.cpp: None when the word is not a boolean."""
    low = value.lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    return None


def uint(option: str, value: str, command: str | None = None, *, lo: int = 0, hi: int = 2**32 - 1) -> int:
    """RTGETOPT_REQ_UINT32 and friends: decimal or 0x-hex, range-checked."""
    try:
        number = int(value, 0) if value.lower().startswith("0x") else int(value, 10)
    except ValueError:
        raise SyntaxFailure(f"Invalid argument format: {option} {value}", command)
    if number < lo or number > hi:
        raise SyntaxFailure(f"{option}: value {value} is out of range ({lo}..{hi})", command)
    return number


def choice(option: str, value: str, table: dict, command: str | None = None):
    try:
        return table[value.lower()]
    except KeyError:
        raise SyntaxFailure(f"Invalid {option.lstrip('-')} '{value}'", command) from None


def complete_vm(_ctx, _param, incomplete: str):
    """Shell completion of registered VM names (best effort: no service -> nothing)."""
    try:
        from .api import Api

        names = [m.name for m in Api.vbox().machines]
    except Exception:
        return []
    from click.shell_completion import CompletionItem

    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def vm_argument(name: str = "vm"):
    return click.argument(name, shell_complete=complete_vm)
