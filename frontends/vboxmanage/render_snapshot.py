"""`snapshot list` layouts (VBoxManageSnapshot.cpp), shared with showvminfo's snapshot section.

A snapshot tree is plain data: {"name", "uuid", "description", "children": [...]}.
"""


def _mr(key: str, value: str) -> str:
    return '{}="{}"\n'.format(key, str(value).replace("\\", "\\\\").replace('"', '\\"'))


def snapshot_machine_readable(root: dict, current: str) -> str:
    out: list[str] = []

    def walk(node: dict, suffix: str) -> None:
        out.append(_mr(f"SnapshotName{suffix}", node["name"]))
        out.append(_mr(f"SnapshotUUID{suffix}", node["uuid"]))
        if node.get("description"):
            out.append(_mr(f"SnapshotDescription{suffix}", node["description"]))
        if node["uuid"] == current:
            out.append(_mr("CurrentSnapshotName", node["name"]))
            out.append(_mr("CurrentSnapshotUUID", node["uuid"]))
            out.append(_mr("CurrentSnapshotNode", f"SnapshotName{suffix}"))
        for i, child in enumerate(node.get("children", []), 1):
            walk(child, f"{suffix}-{i}")

    walk(root, "")
    return "".join(out)


def snapshot_human(root: dict, current: str) -> str:
    """showSnapshots: the same lines with or without --details (descriptions always shown)."""
    out: list[str] = []

    def walk(node: dict, level: int) -> None:
        indent = "   " * level
        mark = " *" if node["uuid"] == current else ""
        out.append(f"{indent}Name: {node['name']} (UUID: {node['uuid']}){mark}\n")
        desc = node.get("description") or ""
        if desc:
            if "\n" in desc:
                out.append(f"{indent}Description:\n{desc}\n")
            else:
                out.append(f"{indent}Description: {desc}\n")
        for child in node.get("children", []):
            walk(child, level + 1)

    walk(root, 1)
    return "".join(out)
