"""The `python3 -IS` launchers scripts/install.sh writes for vboxmanage run the CLI of this checkout."""

import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))


def test_launcher_runs_the_cli_isolated(tmp_path):
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "write_launchers.py"), "--dir", str(tmp_path)],
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
