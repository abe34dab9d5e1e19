"""The launchers scripts/install.sh writes for vboxmanage run the CLI of this checkout: the `python3 -IS`
script (written where no C compiler is at hand, or asked for) and the native one."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))


def test_launcher_runs_the_cli_isolated(tmp_path):
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "write_launchers.py"), "--dir", str(tmp_path),
         "--python-launcher"],
        check=True,
        capture_output=True,
    )
    for name in ("vboxmanage", "VBoxManage"):
        launcher = tmp_path / name
        text = launcher.read_text()
        assert text.startswith(f"#!{sys.executable} -IS\n") and os.access(launcher, os.X_OK)
        # PYTHONPATH pointing elsewhere changes nothing: the launcher's own search path is used
        env = dict(os.environ, PYTHONPATH=str(tmp_path / "elsewhere"))
        got = subprocess.run(
            [str(launcher), "--version"], capture_output=True, text=True, env=env, timeout=60
        )
        want = subprocess.run(
            [sys.executable, "-m", "frontends.vboxmanage.main", "--version"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)
        where = subprocess.run(
            [
                sys.executable,
                "-IS",
                "-c",
                text.split("from frontends")[0] + "import frontends; print(frontends.__file__)",
            ],
            capture_output=True,
            text=True,
        )
        assert where.stdout.strip() == os.path.join(ROOT, "frontends", "__init__.py")


def test_native_launcher_starts_directly_when_opted_out(tmp_path):
    made = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "write_launchers.py"), "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    if "(native)" not in made.stdout:
        pytest.skip(f"no native launcher could be built here: {made.stderr.strip()}")
    trace = tmp_path / "trace"
    for name in ("vboxmanage", "VBoxManage"):
        launcher = tmp_path / name
        assert launcher.read_bytes().startswith(b"\x7fELF") and os.access(launcher, os.X_OK)
        env = dict(os.environ, PYTHONPATH=str(tmp_path / "elsewhere"), VBOXPY_NO_CMDSERVER="1",
                   VBOXPY_CMDSERVER_TRACE=str(trace))
        got = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, env=env,
                             timeout=60)
        want = subprocess.run([sys.executable, "-m", "frontends.vboxmanage.main", "--version"],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)
    assert trace.read_text() == "direct opted-out\n" * 2
