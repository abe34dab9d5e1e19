"""Rules for what the code may say: it cites only what a clone of the repository has or
VirtualBox's own sources, and carries no history of how it was written."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
TREES = ("settings", "vboxsvc", "frontends", "vmm", "tests", "scripts")
FORBIDDEN = [
    (re.compile(r"reference §|reference/[a-z]+\.md|\.\./shared|/work/shared"),
     "cites a document outside the repo"),
    (re.compile(r"\bissue \d+\b", re.I), "names a tracker issue"),
    (re.compile(r"\bhelper [A-H]\b|\b[A-H]'s (VM builder|Machine|EM|vmm|devices|frontends)"),
     "names who built what"),
    (re.compile(r"not in (this|the) tree( yet)?"), "skips for a module that is part of the tree"),
]


def _sources():
    for top in TREES:
        for path in (ROOT / top).rglob("*"):
            if path.suffix in (".py", ".sh", ".md") and "__pycache__" not in path.parts:
                yield path
    for name in ("README.md", "ARCHITECTURE.md", "CONTRIBUTING.md"):
        yield ROOT / name


def test_no_outside_citations_or_process_history():
    bad = []
    for path in _sources():
        if path == pathlib.Path(__file__):
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for pattern, why in FORBIDDEN:
                if pattern.search(line):
                    bad.append(f"{path.relative_to(ROOT)}:{n}: {why}: {line.strip()[:100]}")
    assert not bad, "\n".join(bad)


def test_rules_catch_examples():
    assert FORBIDDEN[0][0].search("see reference §3.3")
    assert FORBIDDEN[1][0].search("# issue 9 hook")
    assert not FORBIDDEN[1][0].search("an issue with the ring")
    assert FORBIDDEN[2][0].search("the VM process (helper E's frontends/headless)")
    assert FORBIDDEN[3][0].search('pytest.skip("the service is not in the tree yet")')
