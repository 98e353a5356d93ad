#!/usr/bin/env bash
# Chaos runs: SIGKILL or SIGSTOP of a random rank at a random moment, on 2-4
# local ranks, in every phase of the stack; every survivor must fail with
# REMOTE or TIMEOUT naming a peer within timeout + 1 s (scripts/chaos.py).
#   scripts/chaos.sh [--runs N] [--build DIR] [--seed S] [--table FILE] [--verbose]
# Default 100 runs on build/; its last line is "N runs, H hangs, C crashes,
# L wrong statuses", and it exits 0 only when H, C and L are 0. Leaks: run it
# on the ASan build (--build build-asan).
set -euo pipefail
exec python3 "$(dirname "$0")/chaos.py" "$@"
