"""CFGM: the VM's configuration tree, built from the machine's settings before the VM is.

As in VirtualBox, the VM process turns the machine settings into a tree of named nodes
holding typed values (integers, strings, bytes, booleans); the VM builder and devices read
only this tree.  Paths use '/' ("Devices/serial/0/Config/IOBase").
"""

from __future__ import annotations

from collections.abc import Iterator

Value = int | str | bytes | bool


class CfgmError(Exception):
    """A missing or mistyped configuration value."""


class CfgNode:
    def __init__(self, name: str = "", parent: CfgNode | None = None):
        self.name = name
        self.parent = parent
        self.values: dict[str, Value] = {}
        self.children: dict[str, CfgNode] = {}

    @property
    def path(self) -> str:
        if self.parent is None:
            return "/"
        return self.parent.path.rstrip("/") + "/" + self.name

    def child(self, path: str, create: bool = False) -> CfgNode | None:
        node: CfgNode = self
        for part in [p for p in path.split("/") if p]:
            nxt = node.children.get(part)
            if nxt is None:
                if not create:
                    return None
                nxt = node.children[part] = CfgNode(part, node)
            node = nxt
        return node

    def node(self, path: str) -> CfgNode:
        """The child at path, created if missing."""
        node = self.child(path, create=True)
        assert node is not None                 # created
        return node

    def set(self, path: str, value: Value) -> None:
        parent, _, name = path.rpartition("/")
        if not name:
            raise CfgmError(f"bad value path {path!r}")
        if not isinstance(value, int | str | bytes | bool):
            raise CfgmError(f"{path}: unsupported value type {type(value).__name__}")
        self.node(parent).values[name] = value

    def get(self, path: str, default: Value | None = None) -> Value | None:
        parent, _, name = path.rpartition("/")
        node = self.child(parent)
        if node is None or name not in node.values:
            return default
        return node.values[name]

    def get_int(self, path: str, default: int | None = None) -> int:
        v = self.get(path, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise CfgmError(f"{self.path.rstrip('/')}/{path}: expected an integer, got {v!r}")
        return v

    def get_str(self, path: str, default: str | None = None) -> str:
        v = self.get(path, default)
        if not isinstance(v, str):
            raise CfgmError(f"{self.path.rstrip('/')}/{path}: expected a string, got {v!r}")
        return v

    def get_bool(self, path: str, default: bool | None = None) -> bool:
        v = self.get(path, default)
        if isinstance(v, int) and not isinstance(v, bool) and v in (0, 1):
            return bool(v)
        if not isinstance(v, bool):
            raise CfgmError(f"{self.path.rstrip('/')}/{path}: expected a boolean, got {v!r}")
        return v

    def __iter__(self) -> Iterator[CfgNode]:
        return iter(self.children.values())

    def dump(self, indent: int = 0) -> list[str]:
        """Lines like VBox.log's CFGM dump."""
        pad = "  " * indent
        out = [f"{pad}[{self.path}]"]
        for k, v in sorted(self.values.items()):
            out.append(f"{pad}  {k} <{type(v).__name__}> = {v!r}")
        for c in self.children.values():
            out += c.dump(indent + 1)
        return out
