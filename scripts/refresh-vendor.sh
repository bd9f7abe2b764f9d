#!/usr/bin/env bash
# Refresh the dashboard's one third-party library, uPlot (MIT), from the npm
# registry: `npm pack` the package, then copy its browser build and its
# LICENSE into web/dashboard/vendor/. Usage: scripts/refresh-vendor.sh [VERSION]
# (default: the latest release). Review the diff and commit the result; the
# dashboard never loads anything from the network at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:-latest}"
dest="web/dashboard/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

tarball="$(cd "$work" && npm pack --silent "uplot@${version}" | tail -n 1)"
tar -xzf "$work/$tarball" -C "$work"
pkg="$work/package"

for f in dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE package.json; do
  [ -f "$pkg/$f" ] || { echo "refresh-vendor: $f is missing from $tarball" >&2; exit 1; }
done

mkdir -p "$dest"
cp "$pkg/dist/uPlot.iife.min.js" "$dest/uPlot.iife.min.js"
cp "$pkg/dist/uPlot.min.css" "$dest/uPlot.min.css"
cp "$pkg/LICENSE" "$dest/uPlot.LICENSE"
got="$(node -p "require('$pkg/package.json').version")"
printf 'uPlot %s from the npm registry (%s), MIT license: see uPlot.LICENSE\n' "$got" "$tarball" > "$dest/VERSIONS"
echo "refresh-vendor: uPlot $got -> $dest"
