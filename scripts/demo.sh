#!/usr/bin/env bash
# make demo: the main job end to end, on loopback only.
#   1. build a reproducible OCI image with the real packer and the fixity-oci builder
#   2. check the image with independent readers (skopeo, umoci)
# Run through `make demo`, which builds the plugin and the CLI and puts the pinned
# tools (packer, umoci, …) on PATH.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/.demo"
rm -rf "$work"
mkdir -p "$work"
cp -r "$root/example/." "$work/"
cd "$work"
say() { printf '\n==> %s\n' "$*"; }

say "packer build (fixity-oci from scratch, file provisioner)"
packer build -color=false -var "output_dir=$work/output/demo" build.pkr.hcl | sed 's/^/    /'
digest=$(sed -n 's/.*"artifact_id": "\(sha256:[0-9a-f]*\)".*/\1/p' output/packer-manifest.json | tail -1)
[ -n "$digest" ] || { echo "demo: no image digest in output/packer-manifest.json" >&2; exit 1; }

say "independent readers"
skopeo inspect --format 'skopeo: {{.Digest}} {{.Os}}/{{.Architecture}} layers={{len .Layers}}' "oci:$work/output/demo:1.0.0"
umoci unpack --rootless --image "$work/output/demo:1.0.0" "$work/unpacked" >/dev/null
echo "umoci: unpacked $(cd "$work/unpacked/rootfs" && find . -type f | sort | tr '\n' ' ')"

say "image digest"
echo "$digest"
