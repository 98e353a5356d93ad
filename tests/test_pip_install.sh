#!/usr/bin/env bash
# README's pip install, as a new user runs it: a fresh venv, `pip install
# bindings/python` (scikit-build-core builds libtppp with CMake and bundles
# it in the package), then, from another directory with nothing set
# (no TPPP_LIBRARY, no LD_LIBRARY_PATH, no build tree on the path), `import
# tppp` finds its own library and runs a model forward. Args: source dir,
# a scratch build dir (kept between runs so a rerun rebuilds little).
set -euo pipefail
src="$1"; scratch="$2"
venv=$(mktemp -d); trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check scikit-build-core numpy
# --no-build-isolation: the backend just installed, not another download per build.
"$venv/bin/pip" install -q --disable-pip-version-check --no-build-isolation -C build-dir="$scratch" "$src/bindings/python"
cd "$venv"
env -u TPPP_LIBRARY -u LD_LIBRARY_PATH -u PYTHONPATH "$venv/bin/python" - "$src/tests/fixtures/data/models/qwen2" <<'PY'
import os, sys, tppp
lib = tppp.library._name
assert os.path.dirname(lib) == os.path.dirname(tppp.__file__), f"loaded {lib}, not the package's own library"
with tppp.Group.from_env() as g, tppp.Checkpoint(sys.argv[1]) as c, tppp.Model(g, c) as m:
    toks, _ = m.generate([[5, 17, 30]], max_new=4)
assert len(toks[0]) == 4, toks
print("pip install OK:", tppp.__version__, "library", lib, "tokens", toks[0])
PY
