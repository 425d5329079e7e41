#!/usr/bin/env bash
# Builds the npm package @eventseal/component from a component build:
#   packages/npm/build.sh <eventseal_component.wasm> <out-dir>
# transpiles the component with jco into a staged copy of this folder (so the source
# tree never holds generated code), sets the package version to the component crate's
# (the Cargo workspace version), and packs it into <out-dir>. Prints the tarball's path.
# jco comes from packages/npm/node_modules, installed by scripts/setup.
set -euo pipefail

if [ $# -ne 2 ] || [ ! -f "$1" ]; then
    echo "usage: $0 <eventseal_component.wasm> <out-dir>" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
component=$(realpath "$1")
mkdir -p "$2"
out=$(realpath "$2")

for tool in node npm cargo; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/setup" >&2; exit 1; }
done
jco="$here/node_modules/.bin/jco"
[ -x "$jco" ] || { echo "jco is missing: run scripts/setup (or: cd packages/npm && npm install)" >&2; exit 1; }

# The component crate's version, as cargo reads it (it inherits the workspace's).
version=$(cargo metadata --no-deps --format-version 1 --locked --manifest-path "$here/../../Cargo.toml" |
    node -e 'const m = JSON.parse(require("fs").readFileSync(0, "utf8"));
             console.log(m.packages.find((p) => p.name === "eventseal-component").version)')

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$here/package.json" "$here/README.md" "$here/index.js" "$here/index.d.ts" "$stage/"
"$jco" transpile "$component" --name eventseal --out-dir "$stage/generated" --quiet
cd "$stage"
npm pkg set version="$version"
tarball=$(npm pack --silent --pack-destination "$out" | tail -n 1)
echo "$out/$tarball"
