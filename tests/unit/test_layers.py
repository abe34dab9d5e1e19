"""DESIGN.md's import rules, checked on the source tree (AST, no imports executed)."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
OURS = ("settings", "vboxsvc", "frontends", "vmm")


def _imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = []
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names.append(mod)
            else:
                names.append(node.module or "")
    return [n for n in names if n.split(".")[0] in OURS]


def _allowed(src: str, target: str) -> bool:
    top = src.split(".")[0]
    if target.split(".")[0] == top and not src.startswith("vboxsvc") and not src.startswith("frontends"):
        return True
    if top == "settings":
        return target.startswith("settings")
    if top == "frontends":
        sub = src.split(".")[1] if "." in src else ""
        return (target.startswith(("vboxsvc.api", "vboxsvc.ipc"))
                or target.startswith(f"frontends.{sub}") or target == "frontends"
                or (sub == "headless" and target.startswith("vmm")))  # the VM process hosts the VMM
    if top == "vmm":
        return target.startswith(("vmm", "vboxsvc.api", "settings"))
    if top == "vboxsvc":
        if target.startswith("vboxsvc"):
            # the bus carries no business logic; the schema depends on nothing but itself
            if src.startswith("vboxsvc.ipc"):
                return target.startswith(("vboxsvc.ipc", "vboxsvc.api"))
            if src.startswith("vboxsvc.api"):
                return target.startswith("vboxsvc.api")
            return True
        if target.startswith("vmm"):
            return target.startswith("vmm.storage")
        return target.startswith("settings")
    return False


def test_import_rules():
    bad = []
    for top in OURS:
        for path in (ROOT / top).rglob("*.py"):
            src = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for target in _imports(path):
                if not _allowed(src, target):
                    bad.append(f"{src} imports {target}")
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_rules_catch_violations():
    assert not _allowed("frontends.vboxmanage.main", "vboxsvc.server.registry")
    assert not _allowed("vboxsvc.server.media", "vmm.devices.uart")
    assert not _allowed("settings.paths", "vboxsvc.api")
    assert not _allowed("vmm.devices.pic", "frontends.headless")
    assert _allowed("vboxsvc.server.media", "vmm.storage.vdi")
    assert _allowed("frontends.headless.main", "vboxsvc.ipc.client")
    assert _allowed("frontends.headless.vmprocess", "vmm.vm")
    assert not _allowed("frontends.vboxmanage.main", "vmm.vm")
