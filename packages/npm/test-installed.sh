#!/usr/bin/env bash
# Runs the package's tests against an installed copy, as a user gets it:
#   packages/npm/test-installed.sh <eventseal-component-X.Y.Z.tgz> [bench]
# makes a fresh folder, `npm install`s the tarball there (and its one dependency, from the
# registry), copies test/ in and runs `node --test test/`. With `bench`, then runs
# bench.mjs in the same folder. The folder is removed afterwards unless KEEP=1.
set -euo pipefail

if [ $# -lt 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 <eventseal-component-X.Y.Z.tgz> [bench]" >&2
    exit 2
fi
for tool in node npm; do
    command -v "$tool" >/dev/null || {
        echo "$tool is missing: install Node.js 20 or later (Debian: apt-get install nodejs npm; or scripts/setup)" >&2
        exit 1
    }
done
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "Node.js $(node --version) is too old: the package needs 20 or later" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
tarball=$(realpath "$1")
folder=$(mktemp -d)
if [ "${KEEP:-}" = 1 ]; then echo "kept: $folder" >&2; else trap 'rm -rf "$folder"' EXIT; fi

cd "$folder"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error "$tarball"
cp -r "$here/test" .
# The tests make their own policy and keyring: nothing of the caller's environment.
env -u EVENTSEAL_TEST_POLICY -u EVENTSEAL_TEST_KEYRING node --test test/
if [ "${2:-}" = bench ]; then
    cp "$here/bench.mjs" .
    node bench.mjs
fi
