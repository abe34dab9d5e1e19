"""Assemble small test guests with GNU as + ld into flat binaries (tests skip without binutils)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

HAVE_BINUTILS = shutil.which("as") is not None and shutil.which("ld") is not None
needs_binutils = pytest.mark.skipif(not HAVE_BINUTILS, reason="GNU as/ld not installed")


def assemble(source: str, base: int, bits: int = 64) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        src, obj, out = Path(d, "g.S"), Path(d, "g.o"), Path(d, "g.bin")
        src.write_text(source)
        subprocess.run(["as", "--64" if bits == 64 else "--32", "-o", str(obj), str(src)], check=True,
                       capture_output=True)
        emu = [] if bits == 64 else ["-m", "elf_i386"]
        subprocess.run(["ld", *emu, f"-Ttext={base:#x}", "-e", f"{base:#x}", "--oformat", "binary", "-o",
                        str(out), str(obj)], check=True, capture_output=True)
        return out.read_bytes()
