#!/usr/bin/env bash
# Runs every Fuzz* target in the module for a bounded time each (go test -fuzz takes
# one target per run). Usage: scripts/fuzz.sh [duration]
set -euo pipefail
export GOTOOLCHAIN=local
t=${1:-20s}
n=0
for pkg in $(go list ./...); do
  for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "fuzz: $pkg $f ($t)"
    go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" -fuzzminimizetime 3s "$pkg"
    n=$((n+1))
  done
done
echo "fuzz: $n targets ran"
