#!/usr/bin/env bash
# make demo: the main job end to end, on loopback only.
#   1. start a private Sigstore (Fulcio, TSA, Rekor v2) and a GitHub-Actions-shaped OIDC
#      issuer on 127.0.0.1, and act as a GitHub Actions job
#   2. packer build: lint + test + render the policy, build a reproducible OCI image,
#      bake the policy bundle and the verifier, sign the image hash keylessly, verify
#      the bundle and record the release in a file ledger (channel staging)
#   3. read the image with skopeo and umoci; verify the signature with fixity and with
#      the real cosign; ask the baked verifier for a decision
#   4. promote to prod, plan a rollout, revoke, plan again
# Run through `make demo`, which builds the plugin and the static CLI and puts the
# pinned tools (packer, cosign, Sigstore servers, umoci) on PATH.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/.demo"
rm -rf "$work"
mkdir -p "$work/bin"
cp -r "$root/example/." "$work/"
cd "$work"
say() { printf '\n==> %s\n' "$*"; }
fixity="$root/fixity"

say "local Sigstore + OIDC issuer on loopback"
(cd "$root" && go build -o "$work/bin/fixity-devstack" ./cmd/fixity-devstack)
"$work/bin/fixity-devstack" up --dir "$work/sigstore" --env-file "$work/sigstore/env" >"$work/devstack.log" 2>&1 &
stack=$!
trap 'kill $stack 2>/dev/null; wait $stack 2>/dev/null || true' EXIT
"$work/bin/fixity-devstack" wait --dir "$work/sigstore" --timeout 3m
set -a; . "$work/sigstore/env"; set +a
issuer=$FIXITY_DEVSTACK_ISSUER_URL
identity_re="^https://github.com/${GITHUB_REPOSITORY}/"
echo "issuer $issuer, acting as GitHub Actions job of $GITHUB_REPOSITORY"

say "policy: lint and test (the same checks the build runs)"
"$fixity" policy lint policy/github-actions.fixity.hcl
"$fixity" policy test policy/github-actions.fixity.hcl | tail -3

say "packer build: policy -> image -> bake -> sign -> record"
ledger="file://$work/ledger"
packer build -color=false \
  -var "output_dir=$work/output/demo" \
  -var "sigstore_dir=$work/sigstore" \
  -var "ledger=$ledger" \
  -var "signer_issuer=$issuer" \
  -var "signer_identity_regexp=$identity_re" \
  -var "fixity_binary=$fixity" \
  build.pkr.hcl | sed 's/^/    /'
digest=$(sed -n 's/.*"artifact_id": "\(sha256:[0-9a-f]*\)".*/\1/p' output/packer-manifest.json | tail -1)
[ -n "$digest" ] || { echo "demo: no image digest in output/packer-manifest.json" >&2; exit 1; }
bundle="$work/output/demo.sigstore.json"

say "independent readers: skopeo and umoci"
skopeo inspect --format 'skopeo: {{.Digest}} {{.Os}}/{{.Architecture}} layers={{len .Layers}}' "oci:$work/output/demo:1.0.0"
umoci unpack --rootless --image "$work/output/demo:1.0.0" "$work/unpacked" >/dev/null
echo "umoci: $(cd "$work/unpacked/rootfs" && find . -type f | sort | tr '\n' ' ')"

say "verify the signed hash offline: fixity verify and the real cosign"
"$fixity" verify --bundle "$bundle" --digest "$digest" --trusted-root "$work/sigstore/trusted_root.json" \
  --certificate-oidc-issuer "$issuer" --certificate-identity-regexp "$identity_re"
cosign verify-blob-attestation --bundle "$bundle" --digest "${digest#sha256:}" --digestAlg sha256 \
  --type https://fixity.dev/image-release/v1 --trusted-root "$work/sigstore/trusted_root.json" \
  --certificate-oidc-issuer "$issuer" --certificate-identity-regexp "$identity_re" --insecure-ignore-sct
if "$fixity" verify --bundle "$bundle" --digest "$digest" --trusted-root "$work/sigstore/trusted_root.json" \
  --certificate-oidc-issuer "$issuer" --certificate-identity-regexp '^https://github.com/someone-else/' >/dev/null 2>&1; then
  echo "demo: a wrong identity was accepted" >&2; exit 1
fi
echo "a wrong signer identity is rejected"

say "the baked verifier decides with the baked policy (no network)"
"$work/bin/fixity-devstack" token --dir "$work/sigstore" --aud https://authz.payments.acme.internal > token.jwt
set +e
"$work/unpacked/rootfs/bin/fixity" authz check --bundle "$work/unpacked/rootfs/etc/fixity" --token-file token.jwt --permission deploy -o json
code=$?
set -e
rm -f token.jwt
# The baked policy trusts only the pinned GitHub keys: the local issuer's token must be denied (exit 1).
[ "$code" = 1 ] || { echo "demo: the baked verifier answered $code for a token from an untrusted issuer, want 1 (deny)" >&2; exit 1; }
echo "denied (exit 1): the image trusts only its pinned issuer keys"

say "ledger: promote, plan a rollout, revoke, plan again"
"$fixity" release list --ledger "$ledger"
"$fixity" release promote --ledger "$ledger" --channel prod --reason "staging soak passed" "fixity-demo@1.0.0"
old=sha256:$(printf old | sha256sum | cut -d' ' -f1)
printf 'id,image\nweb-1,fixity-demo@%s\nweb-2,fixity-demo@%s\nweb-3,fixity-demo@%s\n' "$digest" "$digest" "$old" > inventory.csv
set +e
"$fixity" rollout plan --ledger "$ledger" --channel prod --inventory csv:inventory.csv -o table; code=$?
[ "$code" = 3 ] || { echo "demo: plan exit $code, want 3 (web-3 runs a never-recorded hash)" >&2; exit 1; }
"$fixity" release revoke --ledger "$ledger" --reason "demo: CVE in the payload" --empty "fixity-demo@1.0.0"
"$fixity" rollout plan --ledger "$ledger" --channel prod --inventory csv:inventory.csv -o json > plan.json; code=$?
set -e
cat plan.json
[ "$code" = 3 ] && grep -q '"web-1"' plan.json || { echo "demo: after the revoke web-1 must be replaced now" >&2; exit 1; }
"$fixity" release verify-chain --ledger "$ledger"

say "image digest"
echo "$digest"
