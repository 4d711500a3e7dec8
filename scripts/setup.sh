#!/usr/bin/env bash
# Installs what the build and tests need on a fresh Debian machine, and nothing that is
# already there. Run as root (or with sudo available).
set -euo pipefail

packages=(
  cmake g++ make pkg-config
  libopenblas-openmp-dev   # OpenBLAS on OpenMP: BLAS and our kernels share one thread pool
  libgtest-dev libgmock-dev
  nlohmann-json3-dev       # flashattn bench --compare reads JSON lines
  gnuplot-nox              # the benchmark report's plots
  valgrind linux-perf      # flashattn io: measured memory traffic (cachegrind, or hardware counters)
  libopenmpi-dev openmpi-bin  # flashattn::ring: ring attention over MPI, its tests run through mpirun
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

# Python: the package's build (scikit-build-core, nanobind), its tests (pytest) and PyTorch.
# torch's PyPI wheel is several GB with its CUDA libraries: it is installed only when
# `import torch` fails, never upgraded or replaced.
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup: $python not found; install Python 3.9 or later with pip" >&2
  exit 1
fi
py_missing=()
for requirement in torch:torch numpy:numpy pytest:pytest nanobind:nanobind scikit_build_core:scikit-build-core; do
  "$python" -c "import ${requirement%%:*}" 2>/dev/null || py_missing+=("${requirement#*:}")
done
if ((${#py_missing[@]})); then
  echo "setup: pip installing ${py_missing[*]}"
  "$python" -m pip install --quiet --root-user-action=ignore "${py_missing[@]}"
else
  echo "setup: Python packages present"
fi
