"""ARCHITECTURE.md cannot go stale: every file and folder it names exists, every `Class.method` it
names is defined, and its device table agrees with the VM builder's placement tables."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from vmm.vm import ACPI_SCI_IRQ, COM_PORTS, PCI_SLOTS, PLACEMENT

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "ARCHITECTURE.md"
TOPS = ("settings/", "vboxsvc/", "frontends/", "vmm/", "tests/", "scripts/", "systemd/")
FILE_ENDINGS = (".py", ".sh", ".md", ".toml")
CODE = re.compile(r"`([^`\s]+)`")
# PCI functions vboxpy places (the slot table also reserves VirtualBox's slots of devices it lacks)
PLACED_PCI = ("host", "isa", "ide", "vga", "nic0", "nic1", "vmmdev", "acpi", "ahci", "virtio-scsi")


def _blocks(text: str) -> list[str]:
    """Paragraphs, list items and table rows: a bare file name is read relative to the last folder
    named before it in the same block."""
    out: list[str] = []
    for line in text.splitlines():
        starts = not line.strip() or re.match(r"\s*(- |\d+\. |\|)", line) or line.startswith("#")
        if starts or not out:
            out.append(line)
        else:
            out[-1] += "\n" + line
    return out


def _named_paths(text: str) -> list[tuple[str, Path | None]]:
    """(token as written, the folder a bare file name is relative to; None for a full path)."""
    found = []
    for block in _blocks(text):
        folder = ROOT
        for token in CODE.findall(block):
            token = token.rstrip(",.;:")
            if token.startswith(TOPS):
                found.append((token, None))
                path = ROOT / token
                folder = path if token.endswith("/") else path.parent
            elif "/" not in token and token.endswith(FILE_ENDINGS) and not token.startswith("."):
                found.append((token, folder))
    return found


def _exists(token: str, folder: Path | None) -> bool:
    if folder is None:
        return bool(list(ROOT.glob(token.rstrip("/")))) if "*" in token else (ROOT / token).exists()
    if (folder / token).exists() or list(folder.glob(token)):
        return True
    return any(p for p in ROOT.rglob(token) if ".cache" not in p.parts)   # a test named by its file


def test_every_named_path_exists():
    named = _named_paths(DOC.read_text())
    assert len(named) > 100, "the code map names fewer files than expected: is the parser broken?"
    missing = sorted({t for t, folder in named if not _exists(t, folder)})
    assert not missing, f"ARCHITECTURE.md names files the tree lacks: {missing}"


def _classes() -> dict[str, list[tuple[Path, set[str]]]]:
    out: dict[str, list[tuple[Path, set[str]]]] = {}
    for top in ("settings", "vboxsvc", "frontends", "vmm"):
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ClassDef):
                    members = {
                        n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                    }
                    out.setdefault(node.name, []).append((path, members))
    return out


def test_every_named_method_is_defined():
    classes = _classes()
    bad = []
    for token in set(CODE.findall(DOC.read_text())):
        m = re.fullmatch(r"([A-Z][A-Za-z0-9]+)\.([a-z_][a-z_0-9]*)", token)
        if m and m.group(1) in classes and not any(m.group(2) in members
                                                   for _p, members in classes[m.group(1)]):
            bad.append(token)
    assert not bad, f"ARCHITECTURE.md names methods that do not exist: {sorted(bad)}"


def _device_rows() -> list[str]:
    text = DOC.read_text()
    table = text[text.index("## Devices"):text.index("## Recipes")]
    return [line for line in table.splitlines() if line.startswith("| ") and "`vmm/" in line]


def _mentions_port(row: str, port: int) -> bool:
    return re.search(rf"\b0x0*{port:x}\b", row, re.I) is not None


def _mentions_irq(row: str, irq: int) -> bool:
    return any(str(irq) in re.split(r"[,/\s]+", m) for m in re.findall(r"IRQ ([\d,/ ]+)", row))


def test_device_table_agrees_with_the_placement_table():
    rows = _device_rows()
    bad = []
    for name, base, _span, irq in PLACEMENT:
        hits = [r for r in rows if _mentions_port(r, base)]
        if not hits:
            bad.append(f"{name}: no row names port {base:#x}")
        elif irq is not None and not any(_mentions_irq(r, irq) for r in hits):
            bad.append(f"{name}: the row of port {base:#x} does not say IRQ {irq}")
    for base, irq in COM_PORTS:
        if not any(_mentions_port(r, base) and _mentions_irq(r, irq) for r in rows):
            bad.append(f"COM port {base:#x}: no row with IRQ {irq}")
    if not any("SCI" in r and _mentions_irq(r, ACPI_SCI_IRQ) for r in rows):
        bad.append(f"ACPI: no row says SCI IRQ {ACPI_SCI_IRQ}")
    for name in PLACED_PCI:
        slot, fn = PCI_SLOTS[name]
        if not any(f"00:{slot:02x}.{fn}" in r.lower() for r in rows):
            bad.append(f"{name}: no row names PCI 00:{slot:02x}.{fn}")
    assert not bad, "ARCHITECTURE.md's device table and vmm/vm.py disagree:\n" + "\n".join(bad)


def test_checks_catch_mistakes():
    assert _mentions_port("| x | ports 0x3F8/0x2F8; IRQ 4/3 |", 0x2F8)
    assert not _mentions_port("| x | ports 0x3F80 |", 0x3F8)
    assert _mentions_irq("| kbc | ports 0x60, 0x64; IRQ 1, 12 |", 12)
    assert not _mentions_irq("| kbc | ports 0x60, 0x64; IRQ 1, 12 |", 2)
    assert not _exists("vmm/devices/no_such_device.py", None)
    assert not _exists("no_such_device.py", ROOT / "vmm" / "devices")
    assert ("uart.py", ROOT / "vmm" / "devices") in _named_paths("- `vmm/devices/pic.py` and `uart.py`")
