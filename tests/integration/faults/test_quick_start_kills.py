"""kill -9 of the service at random moments while a command renames machines: the next start's
machine list (from the quick view when the files are as a service left them) must be the list a
full read of the settings gives."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

from .harness import Home

ROUNDS = 8


def _full_list(home: Home) -> str:
    """`list vms` after a start that must read every file (VirtualBox.xml touched as by another
    program, so no record matches)."""
    home.stop_service()
    os.utime(home.vbox_home / "VirtualBox.xml")
    return home.cli("list", "vms", check=0).stdout


def _log(home: Home) -> str:
    return (home.vbox_home / "VBoxSVC.log").read_text(errors="replace")


def test_the_list_after_a_kill_is_the_full_reads(tmp_path):
    home = Home(tmp_path / "h")
    home.cli("setproperty", "machinefolder", str(home.root / "VirtualBox VMs"), check=0)
    for name in ("m0", "m1", "m2"):
        home.cli("createvm", "--name", name, "--register", check=0)
    rnd = random.Random(20261207)
    quick_seen = 0
    try:
        for i in range(ROUNDS):
            names = [line.split('"')[1] for line in _full_list(home).splitlines()]
            home.stop_service()                 # leaves the record: the next start may be quick
            proc = subprocess.Popen([sys.executable, "-m", "frontends.vboxmanage.main", "modifyvm",
                                     names[i % len(names)], "--name", f"r{i}"], cwd=str(home.root),
                                    env=home.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rnd.uniform(0.0, 0.4))
            home.kill_service()
            proc.wait(timeout=120)
            home.stop_service()
            after = home.cli("list", "vms", check=0).stdout
            quick_seen += "from the quick view" in _log(home)
            assert after == _full_list(home), f"round {i}"
            assert after.count("\n") == 3, after
    finally:
        home.stop_service()
    assert quick_seen >= 1, "no start in the rounds was a quick one"
