#!/usr/bin/env bash
# One-command, idempotent environment for law_hpc on a Debian machine.
#   bash tools/setup_env.sh            # Debian packages, .venv, torch, Horovod (Gloo+MPI), DALI, h5py, package
#   bash tools/setup_env.sh --slurm    # also the Slurm + munge packages the Slurm tests use
# A second run with nothing changed exits in seconds. The built Horovod wheel is cached in
# ${LAW_HPC_CACHE:-~/.cache/law_hpc}/wheels, keyed by the versions it was built against.
set -euo pipefail

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
HOROVOD_VERSION=0.28.1
DALI_PACKAGE="nvidia-dali-cuda120==2.4.0"
APT_PACKAGES=(openmpi-bin libopenmpi-dev cmake g++ make dataset-fashion-mnist)
SLURM_PACKAGES=(slurm-wlm munge libpmix-dev)

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
cache="${LAW_HPC_CACHE:-$HOME/.cache/law_hpc}"
want_slurm=0
for arg in "$@"; do
  case "$arg" in
    --slurm) want_slurm=1 ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "setup_env: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

log() { echo "[setup_env] $*"; }
die() { echo "[setup_env] ERROR: $*" >&2; exit 1; }

# --- platform checks: clear message and non-zero exit when unsupported --------------------------
arch="$(uname -m)"
[ "$arch" = x86_64 ] || die "unsupported architecture '$arch': the pinned torch $TORCH_VERSION / DALI wheels exist for x86_64 only."
python_bin="${PYTHON:-python3}"
pyver="$("$python_bin" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
  || die "no Python found ('$python_bin'); install Python 3.11 or set PYTHON=/path/to/python3.11."
[ "$pyver" = 3.11 ] || die "Python $pyver found; law_hpc pins torch $TORCH_VERSION, built for Python 3.11. Set PYTHON=/path/to/python3.11."

# --- the stamp: everything below is skipped when nothing that matters changed --------------------
stamp_inputs="$(cat "$repo/setup.py" "$0"; echo "slurm=$want_slurm"; "$python_bin" -c 'import sys; print(sys.version)')"
stamp="$(printf '%s' "$stamp_inputs" | sha256sum | cut -c1-16)"
stamp_file="$venv/.law_hpc_setup_stamp"
need_apt() {
  local pkgs=("${APT_PACKAGES[@]}")
  [ "$want_slurm" = 1 ] && pkgs+=("${SLURM_PACKAGES[@]}")
  local missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  echo "${missing[@]:-}"
}
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] && [ -z "$(need_apt)" ] \
   && "$venv/bin/python" -c 'import horovod.torch, mpi4py, h5py, nvidia.dali, law_hpc' 2>/dev/null; then
  log "environment up to date ($venv)"
  exit 0
fi

# --- Debian packages ---------------------------------------------------------------------------
missing="$(need_apt)"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages: $missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "[setup_env] WARNING: cannot install Debian packages (need root and apt-get). Install by hand:" >&2
    echo "    apt-get install $missing" >&2
    echo "[setup_env] continuing with what is present; Horovod's MPI controller and the Fashion-MNIST data may be missing." >&2
  fi
fi

# --- virtual environment and torch ----------------------------------------------------------------
[ -x "$venv/bin/python" ] || { log "creating $venv"; "$python_bin" -m venv "$venv"; }
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade "pip<26.2" setuptools wheel packaging
"${pip[@]}" install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

# --- Horovod: built once per (horovod, torch, python, cuda) and cached outside the repository ----
cuda_home=""
if [ -x /usr/local/cuda/bin/nvcc ]; then cuda_home=/usr/local/cuda; fi
flavour="cpu"; [ -n "$cuda_home" ] && flavour="cuda-$("$cuda_home/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
gpu_ops="${HOROVOD_GPU_OPERATIONS:-none}"
key="horovod-$HOROVOD_VERSION-torch$TORCH_VERSION-py$pyver-$flavour-gpuops$gpu_ops"
wheel_dir="$cache/wheels/$key"
if ! "$venv/bin/python" -c "import horovod, horovod.torch; assert horovod.__version__ == '$HOROVOD_VERSION'" 2>/dev/null; then
  if ! ls "$wheel_dir"/horovod-*.whl >/dev/null 2>&1; then
    log "building Horovod $HOROVOD_VERSION ($key); this takes ~5 min on 2 cores"
    build_tmp="$(mktemp -d)"
    # torch 2.14's headers need C++20 but Horovod's CMake appends -std=c++14 last: upgrade exactly
    # those compile calls and pass every other call (nvcc host calls, links) through unchanged.
    cat > "$build_tmp/cxx" <<'WRAP'
#!/usr/bin/env bash
for a in "$@"; do
  if [ "$a" = "-std=c++14" ]; then exec g++ "$@" -std=c++20; fi
done
exec g++ "$@"
WRAP
    chmod +x "$build_tmp/cxx"
    build_env=(CXX="$build_tmp/cxx" HOROVOD_WITH_PYTORCH=1 HOROVOD_WITHOUT_TENSORFLOW=1
               HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1 MAKEFLAGS="-j$(nproc)")
    command -v mpicxx >/dev/null && build_env+=(HOROVOD_WITH_MPI=1)
    if [ -n "$cuda_home" ]; then
      build_env+=(CUDA_HOME="$cuda_home" HOROVOD_CUDA_HOME="$cuda_home" CUDAToolkit_ROOT="$cuda_home"
                  HOROVOD_BUILD_CUDA_CC_LIST="${HOROVOD_BUILD_CUDA_CC_LIST:-80,90}")
    fi
    mkdir -p "$wheel_dir"
    env "${build_env[@]}" "${pip[@]}" wheel --no-build-isolation --no-deps --no-binary horovod \
        "horovod==$HOROVOD_VERSION" -w "$build_tmp/wheel" > "$build_tmp/build.log" 2>&1 \
      || { tail -40 "$build_tmp/build.log" >&2; die "Horovod build failed; full log: $build_tmp/build.log"; }
    mv "$build_tmp"/wheel/horovod-*.whl "$wheel_dir/"
    rm -rf "$build_tmp"
  else
    log "using cached Horovod wheel $wheel_dir"
  fi
  "${pip[@]}" install --no-deps "$wheel_dir"/horovod-*.whl
  "${pip[@]}" install cffi cloudpickle psutil pyyaml  # Horovod's own runtime deps
fi

# --- the rest and the package itself -------------------------------------------------------------
"${pip[@]}" install "$DALI_PACKAGE" mpi4py h5py
"${pip[@]}" install -e "$repo[test]"

# --- verify ------------------------------------------------------------------------------------
"$venv/bin/horovodrun" --check-build
"$venv/bin/python" -c 'import horovod.torch, mpi4py, h5py, nvidia.dali, law_hpc; print("[setup_env] imports ok")'
echo "$stamp" > "$stamp_file"
log "done: activate with 'source $venv/bin/activate'"
