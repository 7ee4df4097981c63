#!/bin/sh
# Installs a Fixity policy bundle staged by the fixity-oidc Packer provisioner.
# Run by execute_command (often through sudo). Inputs (environment):
#   FIXITY_STAGING        the staging directory (holds bundle/ and maybe fixity)
#   FIXITY_DEST           where the bundle goes (replaced as a whole)
#   FIXITY_VERIFIER_PATH  where the fixity binary goes (optional)
# The new bundle is assembled next to the destination and renamed into place, so a
# reader sees either the old or the new bundle, never a mix.
set -eu
umask 022
src="$FIXITY_STAGING/bundle"
dst="$FIXITY_DEST"
[ -d "$src" ] || { echo "fixity-oidc: staged bundle $src is missing" >&2; exit 1; }
mkdir -p "$(dirname "$dst")"
new="$dst.fixity-new.$$"
old="$dst.fixity-old.$$"
rm -rf "$new"
cp -R "$src" "$new"
find "$new" -type f -exec chmod 0444 {} +
find "$new" -type d -exec chmod 0555 {} +
if [ -e "$dst" ] || [ -L "$dst" ]; then
  mv "$dst" "$old"
fi
mv "$new" "$dst"
if [ -e "$old" ]; then
  chmod -R u+w "$old"
  rm -rf "$old"
fi
if [ -n "${FIXITY_VERIFIER_PATH:-}" ]; then
  mkdir -p "$(dirname "$FIXITY_VERIFIER_PATH")"
  tmp="$FIXITY_VERIFIER_PATH.fixity-new.$$"
  cp "$FIXITY_STAGING/fixity" "$tmp"
  chmod 0555 "$tmp"
  mv -f "$tmp" "$FIXITY_VERIFIER_PATH"
fi
sync 2>/dev/null || true
echo "fixity-oidc: installed policy bundle at $dst"
