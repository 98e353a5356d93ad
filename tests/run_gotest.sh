#!/usr/bin/env bash
# go test for the Go binding, offline, against this build's libtppp.
# Args: module dir, lib dir.
set -euo pipefail
# The cache is keyed by c_api.h: go does not see a change in a header cgo
# includes from outside the package (a stale struct size once slipped by).
hdr=$(sha1sum "$(dirname "$0")/../include/c_api.h" | cut -c1-12)
cd "$1"
export CGO_LDFLAGS="-L$2 -Wl,-rpath,$2" GOFLAGS=-mod=mod GOPROXY=off GOCACHE="${GOCACHE:-$2/go-cache-$hdr}"
# -count=1: go caches results, and it cannot see that libtppp changed.
go test -count=1 ./...
