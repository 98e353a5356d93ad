#!/usr/bin/env bash
# Fails if libtppp.so exports any dynamic symbol outside the tppp_ namespace,
# or misses one that c_api.h declares.
set -euo pipefail
lib="$1"
here="$(cd "$(dirname "$0")" && pwd)"
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^tppp_' || true)
if [ -n "$bad" ]; then
  echo "symbols outside tppp_* exported by $lib:"; echo "$bad"; exit 1
fi
missing=0
for f in $(grep -E '^TPPP_API' "$here/../include/c_api.h" | grep -oE 'tppp_[a-z_0-9]+\(' | tr -d '(' | sort -u); do
  if ! nm -D --defined-only "$lib" | awk '{print $3}' | grep -qx "$f"; then echo "missing export: $f"; missing=1; fi
done
[ $missing -eq 0 ] || exit 1
echo "exports OK: $(nm -D --defined-only "$lib" | wc -l) symbols, all tppp_*"
