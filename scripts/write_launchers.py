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

Usage: python3 scripts/write_launchers.py [--dir DIR] [--check]
  --dir    where to write them (default: this interpreter's scripts folder, where pip put its own)
  --check  print the launcher instead of writing it
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=sysconfig.get_path("scripts"))
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    python = sys.executable
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
