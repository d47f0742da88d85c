#!/usr/bin/env bash
# Builds a gateway plugin written in Python into a WebAssembly component of the gateway:plugin world.
#
#   plugin-sdk/python/build.sh <app-dir> <out.wasm>     (<app-dir> holds app.py, whose WitWorld class is the plugin)
#
# `--stub-wasi` replaces every WASI import of the CPython runtime with a trap, so the component imports the plugin
# world and nothing else: no files, sockets, clocks or environment, which the gateway refuses at upload anyway.
# Python's clock functions then trap (use `clock.now()`), and `random` replays the seed baked in at build time.
set -euo pipefail
sdk="$(cd "$(dirname "$0")" && pwd)"
if [ $# -ne 2 ]; then
    echo "usage: $0 <app-dir> <out.wasm>" >&2
    exit 2
fi
app_dir="$1"
out="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
pinned="$(sed -n 's/^componentize-py==//p' "$sdk/requirements.txt")"
installed="$(componentize-py --version 2>/dev/null | awk '{print $NF}')" || true
if [ "$installed" != "$pinned" ]; then
    echo "componentize-py $pinned is needed (found: ${installed:-none}): pip install -r $sdk/requirements.txt" >&2
    exit 3
fi
cd "$app_dir"
componentize-py --quiet -d "$sdk/../wit" -w plugin componentize app --stub-wasi -o "$out"
echo "$out: $(stat -c %s "$out") bytes"
