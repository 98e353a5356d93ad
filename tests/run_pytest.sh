#!/usr/bin/env bash
# Runs a binding's pytest suite; exit 5 (no tests collected) counts as a failure.
set -u
python3 -m pytest -q -p no:cacheprovider "$@"
