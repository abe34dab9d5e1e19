"""Debian packages for the guest builders: candidate versions from the apt lists, download, unpack.

Every guest artifact is made from Debian packages fetched with `apt-get download` (no other
network), and its cache is keyed by the versions these functions report.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path


class GuestBuildError(Exception):
    """A step of the guest build failed; the message says which and why."""


def _tool(name: str) -> str:
    """The program's path; the system directories too, which a normal user's PATH may lack."""
    if os.sep in name:
        return name
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") or name


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> str:
    cmd = [_tool(cmd[0])] + cmd[1:]
    try:
        res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise GuestBuildError(f"{cmd[0]} is not installed (needed to build the guest)")
    if res.returncode != 0:
        raise GuestBuildError(f"{' '.join(cmd)} failed: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def candidate(package: str) -> tuple[str, str]:
    """(version, depends line) of the package's candidate in the apt lists."""
    out = run(["apt-cache", "show", "--no-all-versions", package])
    version = re.search(r"^Version: (\S+)", out, re.M)
    deps = re.search(r"^Depends: (.*)$", out, re.M)
    if not version:
        raise GuestBuildError(f"apt-cache knows no version of {package} (run apt-get update)")
    return version.group(1), deps.group(1) if deps else ""


def versions(packages: list[str]) -> dict[str, str]:
    return {p: candidate(p)[0] for p in packages}


def download_extract(work: Path, packages: dict[str, str], root: Path | None = None) -> Path:
    """Download the exact versions into `work` and unpack them all into one tree (returned)."""
    run(["apt-get", "download", "-q"] + [f"{p}={v}" for p, v in packages.items()], cwd=work)
    root = root or work / "root"
    for deb in sorted(work.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(root)])
    return root
