#!/usr/bin/env bash
# Prints the Python interpreter that runs vboxpy for the calling user: `python3` when it has
# vboxpy's dependencies, else the venv scripts/install.sh made for users who cannot reach that
# python3 (/opt/vboxpy/venv, made by root for everyone; ~/.local/share/vboxpy/venv, a user's own).
# Exits 1 (with a hint) when there is none.
set -euo pipefail
check='import zmq, msgpack, click, pydantic, lxml, unicorn'
for py in python3 /opt/vboxpy/venv/bin/python3 "${XDG_DATA_HOME:-$HOME/.local/share}/vboxpy/venv/bin/python3"; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c "$check" >/dev/null 2>&1; then
        command -v "$py"
        exit 0
    fi
done
echo "vboxpy: no Python with vboxpy's dependencies for $(id -un); run scripts/install.sh" >&2
exit 1
