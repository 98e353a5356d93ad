#!/usr/bin/env bash
# go test for the Go binding, offline, against this build's libtppp.
# Args: module dir, lib dir.
set -euo pipefail
cd "$1"
export CGO_LDFLAGS="-L$2 -Wl,-rpath,$2" GOFLAGS=-mod=mod GOPROXY=off GOCACHE="${GOCACHE:-$2/go-cache}"
# -count=1: go caches results, and it cannot see that libtppp changed.
go test -count=1 ./...
