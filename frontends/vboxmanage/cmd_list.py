"""`VBoxManage list ...` (VBoxManageList.cpp): VMs, media, OS types, host, system properties."""

import click

from .cli import CONTEXT
from .listing import SUBCOMMANDS, run
from .output import SyntaxFailure


@click.command("list", context_settings=CONTEXT)
@click.option("--long", "-l", "long_", is_flag=True)
@click.option("--sorted", "-s", "sort", is_flag=True)
@click.option("--platform-arch", "--platform", "platform", default=None)
@click.option("--json", "as_json", is_flag=True, help="print JSON (vboxpy extra)")
@click.argument("what")
def list_(long_: bool, sort: bool, platform: str | None, as_json: bool, what: str):
    what = what.lower()
    if what not in SUBCOMMANDS:
        raise SyntaxFailure(f'Unknown subcommand "{what}".', "list")
    if platform is not None and platform.lower() not in ("x86", "arm"):
        raise SyntaxFailure(f"Invalid platform architecture '{platform}'", "list")
    return run(what, long_, sort, as_json)


