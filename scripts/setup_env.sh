#!/usr/bin/env bash
# Creates (or reuses) the Python environment for aad1 and installs the package.
#
# - Reuses an active virtualenv/conda env ($VIRTUAL_ENV / $CONDA_PREFIX) or ./.venv when present.
# - On a machine without CUDA, installs torch==2.13.0 (CPU wheel) BEFORE anything else, so that
#   no dependency can pull a multi-GB CUDA build. Override with TORCH_SPEC="torch==X".
# - Skips all work when the environment was already set up for the current pyproject.toml.
# Prints the python to use on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${VIRTUAL_ENV:-}" ]; then
  py="$VIRTUAL_ENV/bin/python"
elif [ -n "${CONDA_PREFIX:-}" ] && [ "${CONDA_DEFAULT_ENV:-base}" != "base" ]; then
  py="$CONDA_PREFIX/bin/python"
else
  venv="${VENV:-.venv}"
  if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating virtualenv $venv" >&2
    python3 -m venv "$venv"
  fi
  py="$venv/bin/python"
fi

stamp_dir="$("$py" -c 'import sys; print(sys.prefix)')"
want="$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -c1-16)"
stamp="$stamp_dir/.aad1-installed-$want"
if [ -f "$stamp" ]; then
  echo "$py"
  exit 0
fi

pip_install() { "$py" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

if ! "$py" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    spec="${TORCH_SPEC:-torch>=2.5}"
  else
    spec="${TORCH_SPEC:-torch==2.13.0}"   # CPU wheel; a plain "torch" would pull a CUDA build
  fi
  echo "[setup] installing $spec" >&2
  pip_install "$spec"
fi

echo "[setup] installing aad1 and its dependencies" >&2
pip_install -e ".[dev]"

# Notebooks are committed without outputs: register nbstripout as a git filter for this clone.
if git rev-parse --git-dir >/dev/null 2>&1; then
  "$py" -m nbstripout --install --attributes .gitattributes >/dev/null 2>&1 || true
fi

rm -f "$stamp_dir"/.aad1-installed-*
touch "$stamp"
echo "$py"
