#!/usr/bin/env bash
# `cargo check --features cuda` for the whole CLI against a CUDA toolkit, also on a machine
# without a GPU (docs/gpu.md). Usage: scripts/cuda_check.sh [TOOLKIT_DIR]
# TOOLKIT_DIR holds bin/nvcc and include/ (default: $CUDA_ROOT, else /usr/local/cuda). A
# separate target directory keeps the CPU build's artefacts untouched.
set -euo pipefail
toolkit=${1:-${CUDA_ROOT:-/usr/local/cuda}}
if [[ ! -x $toolkit/bin/nvcc ]]; then
  echo "no nvcc in $toolkit/bin: give the toolkit directory (docs/gpu.md says how to install one)" >&2
  exit 2
fi
export CUDA_ROOT=$toolkit CUDA_PATH=$toolkit PATH=$toolkit/bin:$PATH
# Kernels are compiled for this capability when no GPU answers nvidia-smi (90: H100/H200).
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
# cudarc 0.19.10 knows toolkits up to 13.4; newer nvcc versions use the 13.4 bindings.
version=$("$toolkit/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
read -r major minor <<<"$version"
if (( major > 13 || (major == 13 && minor > 4) )); then
  export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13040}
fi
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda} cargo check -p instructrec-cli --features cuda --all-targets
