#!/usr/bin/env python3
"""Build the project's unicorn: the pinned 2.1.4 source distribution, our patches, x86 only.

REM (vmm/rem) needs what stock unicorn 2.1.4 lacks: stores at full speed with self-modifying
code still caught, stops that take effect only at translation-block boundaries (so a timer
can preempt the guest from another thread), and a few exported entry points.  The patches in
patches/ (each says why) are applied to the PyPI sdist, the library is built for the x86
target only (1.6 MB instead of PyPI's 24.5 MB all-architecture one) and packaged as the wheel
`unicorn==2.1.4+vboxpy<N>.<key>`, which satisfies the project's `unicorn==2.1.4` pin.

The wheel is cached under ~/.cache/vboxpy/unicorn/<key>, where key hashes the sdist's
checksum, the build options and the patches: a second run finds it and builds nothing.

    python3 scripts/unicorn/build.py            build (or find) the wheel; print its path
    python3 scripts/unicorn/build.py --install  also pip-install it (unless already installed)
    python3 scripts/unicorn/build.py --lib-dir  print the directory holding the built library
                                                (for LIBUNICORN_PATH)

Any failure exits non-zero with the reason: the install must not go on with a stock wheel.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

VERSION = "2.1.4"
SDIST = f"unicorn-{VERSION}.tar.gz"
SDIST_SHA256 = "00567a70e323f749b419cd86bee4f9115beab7ebba32194581c090cbb7c59cff"
# raise when a patch changes what the library does (the local version says it)
PATCH_LEVEL = 2
HERE = Path(__file__).resolve().parent
PATCHES = sorted((HERE / "patches").glob("*.patch"))
LIBRARY = "libunicorn.so.2"
CMAKE_ARGS = ["-DCMAKE_BUILD_TYPE=Release", "-DUNICORN_ARCH=x86", "-DUNICORN_BUILD_TESTS=off"]


class BuildError(Exception):
    pass


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vboxpy" / "unicorn"


def build_key() -> str:
    h = hashlib.sha256()
    h.update(SDIST_SHA256.encode())
    h.update(" ".join(CMAKE_ARGS).encode())
    for p in PATCHES:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(f"{PATCH_LEVEL} {LIBRARY}".encode())
    return h.hexdigest()[:12]


def local_version(key: str) -> str:
    return f"{VERSION}+vboxpy{PATCH_LEVEL}.{key}"


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None, log: Path | None = None) -> None:
    """Run a build step; on failure show the end of its output."""
    with tempfile.TemporaryFile() as out:
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
        out.seek(0)
        text = out.read().decode(errors="replace")
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{text}\n")
    if rc != 0:
        tail = "\n".join(text.splitlines()[-25:])
        raise BuildError(f"{' '.join(cmd[:3])}... failed (exit {rc}):\n{tail}")


def fetch_sdist(dest: Path) -> Path:
    """The pinned sdist, checked against its known checksum (cached beside the wheels)."""
    path = dest / SDIST
    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != SDIST_SHA256:
        dest.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
             "--no-binary", ":all:",
             "--no-deps", f"unicorn=={VERSION}", "-d", str(dest)])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise BuildError(f"{SDIST} has sha256 {digest}, expected {SDIST_SHA256}")
    return path


def build_wheel(out_dir: Path, key: str) -> Path:
    for tool in ("cmake", "make", "gcc", "patch"):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} is not installed (apt-get install cmake make gcc patch)")
    sdist = fetch_sdist(cache_root() / "sdist")
    work = Path(tempfile.mkdtemp(prefix="vboxpy-unicorn-"))
    log = out_dir / "build.log"
    out_dir.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    try:
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
        tree = work / f"unicorn-{VERSION}"
        for p in PATCHES:
            run(["patch", "-p1", "--forward", "--batch", "-d", str(tree / "src"), "-i", str(p)], log=log)
        build = tree / "src" / "build"
        flags = f'-DVBOX_BUILD_ID=\\"vboxpy{PATCH_LEVEL}.{key}\\"'
        run(
            ["cmake", "-S", str(tree / "src"), "-B", str(build), *CMAKE_ARGS, f"-DCMAKE_C_FLAGS={flags}"],
            log=log,
        )
        run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2), "--target", "unicorn"], log=log)
        lib = build / LIBRARY
        if not lib.exists():
            raise BuildError(f"the build made no {LIBRARY}")
        shutil.copy2(lib, tree / "prebuilt" / LIBRARY)
        (out_dir / "lib").mkdir(exist_ok=True)
        shutil.copy2(lib, out_dir / "lib" / LIBRARY)
        env = dict(os.environ, SETUPTOOLS_SCM_PRETEND_VERSION=local_version(key))
        run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
             "-w", str(work / "dist"), str(tree)], env=env, log=log)
        wheels = list((work / "dist").glob("unicorn-*.whl"))
        if len(wheels) != 1:
            raise BuildError(f"pip wheel made {len(wheels)} wheels")
        check_wheel(wheels[0])
        final = out_dir / wheels[0].name
        shutil.move(str(wheels[0]), final)
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_wheel(wheel: Path) -> None:
    """The wheel carries our library (with the entry points REM needs), not a stock one."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.endswith(LIBRARY)]
        if not names:
            raise BuildError(f"{wheel.name} has no {LIBRARY}")
        data = z.read(names[0])
    if b"uc_vbox_request_stop" not in data:
        raise BuildError(f"{wheel.name} carries a library without the project's patches")


def find_or_build() -> tuple[Path, float | None]:
    """(wheel, seconds spent building, or None when the cache had it)."""
    key = build_key()
    out = cache_root() / key
    found = sorted(out.glob(f"unicorn-{VERSION}+vboxpy*.whl")) if out.is_dir() else []
    if found and (out / "lib" / LIBRARY).exists():
        return found[0], None
    t0 = time.monotonic()
    wheel = build_wheel(out, key)
    took = time.monotonic() - t0
    (out / "build-seconds").write_text(f"{took:.1f}\n")
    return wheel, took


def installed_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("unicorn")
        except PackageNotFoundError:
            return None
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build the project's patched unicorn (x86 only).")
    ap.add_argument("--install", action="store_true", help="pip-install the wheel unless it is installed")
    ap.add_argument("--lib-dir", action="store_true", help="print the directory of the built library")
    args = ap.parse_args(argv)
    try:
        wheel, took = find_or_build()
    except (BuildError, OSError) as e:
        print(f"unicorn build failed: {e}", file=sys.stderr)
        return 1
    if args.lib_dir:
        print(wheel.parent / "lib")
        return 0
    if took is None:
        try:
            earlier = float((wheel.parent / "build-seconds").read_text())
            how = f"cached (its build took {earlier:.0f} s)"
        except (OSError, ValueError):
            how = "cached"
    else:
        how = f"built in {took:.0f} s"
    print(f"unicorn {local_version(build_key())}: {how} ({wheel})")
    if args.install:
        if installed_version() == local_version(build_key()):
            return 0
        rc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                             "--no-deps", "--force-reinstall", str(wheel)]).returncode
        if rc != 0:
            print("unicorn install failed", file=sys.stderr)
            return 1
        if installed_version() != local_version(build_key()):
            print(f"unicorn install failed: pip reports {installed_version()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
