#!/usr/bin/env bash
# Installs the real third-party programs that the demo and the end-to-end tests drive.
# Every program is built from the Go module proxy at a pinned version and cached under
# $FIXITY_CACHE/bin/<name>-<version>/, so reruns cost nothing and a version bump rebuilds.
#
#   scripts/tools.sh [name…]     build the named tools (default: all); prints nothing on a cache hit
#   scripts/tools.sh --path      print a PATH fragment holding every cached tool
set -euo pipefail

FIXITY_CACHE=${FIXITY_CACHE:-$HOME/.cache/fixity}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

# name|module|package inside the module|version
TOOLS=(
  "packer|github.com/hashicorp/packer|.|v1.16.0"
  "staticcheck|honnef.co/go/tools|./cmd/staticcheck|v0.8.2"
  "umoci|github.com/opencontainers/umoci|./cmd/umoci|v0.6.0"
  "olareg|github.com/olareg/olareg|./cmd/olareg|v0.2.2"
  "registry|github.com/distribution/distribution/v3|./cmd/registry|v3.1.2"
  "cosign|github.com/sigstore/cosign/v3|./cmd/cosign|v3.1.3"
  "fulcio|github.com/sigstore/fulcio|.|v1.8.8"
  "timestamp-server|github.com/sigstore/timestamp-authority/v2|./cmd/timestamp-server|v2.1.3"
  "rekor-server|github.com/sigstore/rekor-tiles/v2|./cmd/rekor-server/posix|v2.3.0"
)

tool_dir() { echo "$FIXITY_CACHE/bin/$1-$2"; }

# build_tool builds inside the module's own source tree (copied out of the module cache),
# so the module's own go.mod — replace directives included — decides every dependency.
# `go install pkg@version` cannot do that (it ignores replaces, and the proxy refuses the
# version lists some of these modules would need).
build_tool() {
  local name=$1 module=$2 pkg=$3 version=$4
  local out; out=$(tool_dir "$name" "$version")
  [ -x "$out/$name" ] && return 0
  # One builder per tool at a time: a second caller waits, then finds it cached.
  mkdir -p "$FIXITY_CACHE/bin"
  exec {lock}>"$out.lock"
  flock "$lock"
  if [ -x "$out/$name" ]; then exec {lock}>&-; return 0; fi
  echo "tools: building $name $version (cached afterwards in $out)" >&2
  local src; src=$(cd "$(mktemp -d)" && go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -n "$src" ] || { echo "tools: cannot download $module@$version" >&2; return 1; }
  local work; work=$(mktemp -d)
  cp -r "$src/." "$work/" && chmod -R u+w "$work"
  local tmp; tmp=$(mktemp -d "$out.tmp.XXXXXX")
  (cd "$work" && go build -trimpath -o "$tmp/$name" "$pkg")
  rm -rf "$out" && mv "$tmp" "$out" && rm -rf "$work"
  exec {lock}>&-
}

if [ "${1:-}" = "--path" ]; then
  p=""
  for t in "${TOOLS[@]}"; do IFS='|' read -r name _ _ version <<<"$t"; p="$p:$(tool_dir "$name" "$version")"; done
  echo "${p#:}"
  exit 0
fi

want=("$@")
for t in "${TOOLS[@]}"; do
  IFS='|' read -r name module pkg version <<<"$t"
  if [ ${#want[@]} -eq 0 ] || [[ " ${want[*]} " == *" $name "* ]]; then
    build_tool "$name" "$module" "$pkg" "$version"
  fi
done
