#!/usr/bin/env bash
# Regenerates the packer-sdc outputs: *.hcl2spec.go, docs-partials/ and .web-docs/.
#
# packer-sdc struct-markdown walks up from each file looking for a directory named
# packer-plugin-* and loops forever at / when there is none, so generation runs in a
# copy of the tree under that name and only generated files come back. This works
# whatever the checkout directory is called.
set -euo pipefail
export GOTOOLCHAIN=local
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
copy="$tmp/packer-plugin-fixity"
mkdir -p "$copy"
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$copy" 2>/dev/null || true)
rm -rf "$copy/docs-partials" "$copy/.web-docs/components"
find "$copy" -name '*.hcl2spec.go' -delete
# -mod=mod: the copy may record go.sum entries; they are thrown away with it.
(cd "$copy" && GOFLAGS=-mod=mod go generate ./...)

# Copy back exactly what the generators own.
find "$root" -name '*.hcl2spec.go' -not -path '*/.git/*' -delete
rm -rf "$root/docs-partials"
(cd "$copy" && find . -name '*.hcl2spec.go' -exec cp --parents -t "$root" {} +)
[ -d "$copy/docs-partials" ] && cp -r "$copy/docs-partials" "$root/"

# .web-docs: docs/ with partials expanded, front matter and H1 stripped (what the
# Packer integrations portal reads).
(cd "$copy" && go tool packer-sdc renderdocs -src docs -partials docs-partials/ -dst "$tmp/rendered/")
rm -rf "$root/.web-docs/components"
[ -f "$tmp/rendered/README.md" ] && cp "$tmp/rendered/README.md" "$root/.web-docs/README.md"
for kind in builders provisioners post-processors datasources; do
  [ -d "$tmp/rendered/$kind" ] || continue
  for f in "$tmp/rendered/$kind"/*.mdx; do
    slug=$(basename "$f" .mdx)
    dir="$root/.web-docs/components/${kind%s}/$slug"
    [ "$kind" = "post-processors" ] && dir="$root/.web-docs/components/post-processor/$slug"
    mkdir -p "$dir"
    awk 'BEGIN{fm=0} NR==1&&/^---$/{fm=1;next} fm&&/^---$/{fm=0;next} fm{next} !h&&/^# /{h=1;next} {print}' "$f" | sed '/./,$!d' > "$dir/README.md"
  done
done
gofmt -w $(find "$root" -name '*.hcl2spec.go' -not -path '*/.git/*')
