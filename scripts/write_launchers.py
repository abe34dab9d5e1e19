#!/usr/bin/env python3
"""Write small start-up-fast launchers for `vboxmanage` / `VBoxManage` (run by scripts/install.sh).

Tools call VBoxManage hundreds of times (Vagrant polls `showvminfo` while a guest boots), so
its start-up is paid again and again. pip's console scripts start the interpreter with its
full site initialisation: every .pth file in site-packages is read and run (editable-install
finders, whatever else is installed there) before vboxmanage's first line. The launchers
written here run the same `frontends.vboxmanage.main:main` under `python3 -I -S` (isolated,
no site) with the folders the interpreter would have searched, taken once at install time,
put on sys.path directly: the checkout first, the dependencies' site-packages after the standard
library (where a normal start puts them: a standard module is then found without listing
site-packages, which vboxmanage's own path never needs).

Where a C compiler is at hand ($CC, else cc), the launcher is native (frontends/vboxmanage/launcher.c,
this configuration compiled in): it runs each command in a fork of a resident command server that has
the CLI's modules imported already (frontends/vboxmanage/cmdserver.py), and starts directly, exactly
as the Python launcher does, whenever no server can serve it (VBOXPY_NO_CMDSERVER=1: always). Without
a compiler, or when compiling fails, the Python launcher below is written.

Usage: python3 scripts/write_launchers.py [--dir DIR] [--check] [--python-launcher]
  --dir              where to write them (default: this interpreter's scripts folder, where pip put its own)
  --check            print the (Python) launcher instead of writing it
  --python-launcher  write the Python launcher even where a compiler is at hand
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NAMES = ("vboxmanage", "VBoxManage")

TEMPLATE = '''#!{python} -IS
# vboxpy's {name}: the interpreter isolated (-I) and without site initialisation (-S) for a fast
# start; written by scripts/install.sh (scripts/write_launchers.py), rerun it after moving things.
import sys
sys.path.insert(0, {root!r})
sys.path += {extra!r}
from frontends.vboxmanage.main import main
main()
'''


def search_path(python: str) -> list[str]:
    """The folders a normal start of `python` searches beyond what an isolated start has, checkout first."""
    probe = "import json, sys; print(json.dumps(sys.path))"
    import json

    normal = json.loads(subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True,
                                       cwd="/", env=_clean_env()).stdout)
    bare = json.loads(subprocess.run([python, "-I", "-S", "-c", probe], capture_output=True, text=True,
                                     check=True, cwd="/").stdout)
    extra = [p for p in normal if p and p not in bare and os.path.isdir(p)]
    return [ROOT] + [p for p in extra if os.path.realpath(p) != os.path.realpath(ROOT)]


def _clean_env() -> dict:
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE"):
        env.pop(var, None)
    return env


def render(python: str, name: str) -> str:
    paths = search_path(python)
    return TEMPLATE.format(python=python, name=name, root=paths[0], extra=paths[1:])


def programs(paths: list[str]) -> tuple[str, str]:
    """The `python -IS -c` programs of the native launcher: the direct start (argv[1] is the
    launcher's argv[0]) and the command server."""
    setup = f"import sys;sys.path.insert(0,{paths[0]!r});sys.path+={paths[1:]!r};"
    direct = setup + "del sys.argv[0];from frontends.vboxmanage.main import main;main()"
    server = setup + "from frontends.vboxmanage.cmdserver import serve;serve()"
    return direct, server


def c_string(text: str) -> str:
    return '"' + "".join(c if c.isalnum() or c in " _-./:" else f"\\{b:03o}"
                         for c, b in ((chr(b), b) for b in text.encode())) + '"'


def compile_native(python: str, out: str) -> str | None:
    """Build the native launcher at `out`; None when it is built, else why not."""
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc.split()[0]) is None:
        return f"no C compiler ({cc})"
    direct, server = programs(search_path(python))
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "launcher_config.h"), "w") as handle:
            handle.write(f"#define VBX_PYTHON {c_string(python)}\n"
                         f"#define VBX_DIRECT_CODE {c_string(direct)}\n"
                         f"#define VBX_SERVER_CODE {c_string(server)}\n")
        source = os.path.join(ROOT, "frontends", "vboxmanage", "launcher.c")
        try:
            proc = subprocess.run([*cc.split(), "-O2", "-Wall", "-I", tmp, "-o", out, source],
                                  capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{cc} failed: {exc}"
    if proc.returncode != 0 or not os.path.isfile(out):
        return f"{cc} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=sysconfig.get_path("scripts"))
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--python-launcher", action="store_true")
    args = parser.parse_args()
    python = sys.executable
    if not (args.check or args.python_launcher):
        built = os.path.join(args.dir, f".vboxmanage.{os.getpid()}.build")
        why = compile_native(python, built)
        if why is None:
            for name in NAMES:
                path = os.path.join(args.dir, name)
                tmp = f"{path}.{os.getpid()}.tmp"
                shutil.copyfile(built, tmp)
                os.chmod(tmp, 0o755)
                os.replace(tmp, path)
                print(f"wrote {path} (native)")
            os.unlink(built)
            return
        if os.path.exists(built):
            os.unlink(built)
        print(f"native launcher not built: {why}; writing the Python launcher", file=sys.stderr)
    for name in NAMES:
        text = render(python, name)
        if args.check:
            sys.stdout.write(text)
            return
        path = os.path.join(args.dir, name)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
