"""The import rules of ARCHITECTURE.md, checked on the source tree (AST, no imports executed): which
layer may import which, engines apart from devices, and no import cycle between modules."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
OURS = ("settings", "vboxsvc", "frontends", "vmm")
ENGINES = ("vmm.hm", "vmm.rem", "vmm.engine")


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
    if src.startswith(ENGINES) and target.startswith("vmm.devices"):
        return False                # engines see interrupt lines (vmm.irq) and buses, never a device
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
        return target.startswith(("vmm", "settings"))     # the VMM knows nothing of the Main API
    if top == "vboxsvc":
        if target.startswith("vboxsvc"):
            # the bus carries no business logic; the schema depends on nothing but itself
            if src.startswith("vboxsvc.ipc"):
                return target.startswith(("vboxsvc.ipc", "vboxsvc.api"))
            if src.startswith("vboxsvc.api"):
                return target.startswith("vboxsvc.api")
            return True
        if target.startswith("vmm"):
            # the image formats' public API only: the service never edits image files itself
            return target == "vmm.storage"
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
    assert _allowed("vboxsvc.server.media", "vmm.storage")
    assert not _allowed("vboxsvc.server.clone", "vmm.storage.vdi_header")
    assert _allowed("frontends.headless.main", "vboxsvc.ipc.client")
    assert _allowed("frontends.headless.vmprocess", "vmm.vm")
    assert not _allowed("frontends.vboxmanage.main", "vmm.vm")
    assert not _allowed("vmm.hm.vm", "vmm.devices.base")
    assert not _allowed("vmm.savedstate", "vboxsvc.api.enums")
    assert _allowed("vmm.hm.vm", "vmm.irq")


# -- import cycles -------------------------------------------------------------------------------
# A module's imports, wherever they stand (a function-level import is a dependency too), except those
# under `if TYPE_CHECKING:`, which never run.  `from pkg import mod` depends on pkg.mod; a package
# whose __init__ imports its own modules is not a cycle with them.

def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for top in OURS:
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            for stmt in node.body:
                skip.update(id(n) for n in ast.walk(stmt))
    return skip


def _module_deps(name: str, path: pathlib.Path, mods: dict[str, pathlib.Path]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in mods]
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(mod)
    deps = set()
    for target in found:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        if target and target != name:
            deps.add(target)
    return deps


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles():
    mods = _modules()
    graph = {name: _module_deps(name, path, mods) for name, path in mods.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _private_imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    # only the project's own modules: the standard library's C halves (_thread, _operator) are public
    return [f"{node.module or '.'}.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and (node.level or (node.module or "").split(".")[0] in OURS)
            for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]


def test_no_private_names_imported_across_modules():
    """A name with a leading underscore is its module's own; what others need is public."""
    bad = [f"{path.relative_to(ROOT)} imports {name}" for top in OURS for path in (ROOT / top).rglob("*.py")
           for name in _private_imports(path)]
    assert not bad, "private names imported:\n" + "\n".join(bad)
