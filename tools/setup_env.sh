#!/usr/bin/env bash
# One-command, idempotent environment for law_hpc on a Debian machine.
#   bash tools/setup_env.sh            # Debian packages, .venv, torch, Horovod (Gloo+MPI), DALI, h5py, package
#   bash tools/setup_env.sh --slurm    # also the Slurm + munge packages the Slurm tests use
#   bash tools/setup_env.sh --dry-run  # print which Horovod build this machine gets (and its settings); change nothing
# A second run with nothing changed exits in seconds. The built Horovod wheel is cached in
# ${LAW_HPC_CACHE:-~/.cache/law_hpc}/wheels, keyed by the versions it was built against.
# Horovod build: with a CUDA toolkit (/usr/local/cuda/bin/nvcc or $CUDA_HOME) of torch's CUDA major version,
# NCCL GPU operations against the NCCL of torch's own wheels (nvidia-nccl-cu13); otherwise the CPU build
# (Gloo + MPI). HOROVOD_GPU_OPERATIONS=none forces the CPU operations.
set -euo pipefail

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
HOROVOD_VERSION=0.28.1
DALI_VERSION=2.4.0  # its CUDA flavour follows torch's (cuda130 for torch 2.14's CUDA 13), one CUDA stack
APT_PACKAGES=(openmpi-bin libopenmpi-dev cmake g++ make dataset-fashion-mnist)
SLURM_PACKAGES=(slurm-wlm munge libpmix-dev)

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LAW_VENV:-$repo/.venv}"  # LAW_VENV: another environment (as slurm/common.sh)
cache="${LAW_HPC_CACHE:-$HOME/.cache/law_hpc}"
want_slurm=0
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --slurm) want_slurm=1 ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
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
if [ "$dry_run" = 0 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] && [ -z "$(need_apt)" ] \
   && "$venv/bin/python" -c 'import horovod.torch, mpi4py, h5py, nvidia.dali, pandas, tensorboard, cleanlab, law_hpc' 2>/dev/null; then
  log "environment up to date ($venv)"
  exit 0
fi

# --- the plan: which Horovod build and which DALI this machine gets ----------------------------------
torch_cuda() {  # the CUDA torch is built for ("" = a CPU build); before torch is installed, that of the pinned wheel
  if "$venv/bin/python" -c 'import torch' 2>/dev/null; then
    "$venv/bin/python" -c 'import torch; print(torch.version.cuda or "")'
  else
    echo 13.0  # torch 2.14.1's default wheel on PyPI (cu130)
  fi
}
nccl_root() {  # the nvidia-nccl-cu13 wheel torch depends on: include/nccl.h, lib/libnccl.so.2
  "$venv/bin/python" -c 'import importlib.util as u; print(list(u.find_spec("nvidia.nccl").submodule_search_locations)[0])' \
    2>/dev/null || true
}
plan() {  # sets cuda_home, toolkit, flavour, gpu_ops, key, wheel_dir, dali_package
  cuda_home=""; toolkit=""
  for candidate in "${CUDA_HOME:-}" /usr/local/cuda; do
    if [ -n "$candidate" ] && [ -x "$candidate/bin/nvcc" ]; then cuda_home="$candidate"; break; fi
  done
  [ -n "$cuda_home" ] && toolkit="$("$cuda_home/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  local tcuda; tcuda="$(torch_cuda)"
  flavour="cpu"; gpu_ops="none"
  if [ -n "$cuda_home" ]; then
    flavour="cuda-$toolkit"
    # NCCL GPU operations only against the CUDA torch itself uses (one CUDA stack in the process)
    if [ -n "$tcuda" ] && [ "${toolkit%%.*}" = "${tcuda%%.*}" ]; then gpu_ops="NCCL"; fi
  fi
  gpu_ops="${HOROVOD_GPU_OPERATIONS:-$gpu_ops}"
  key="horovod-$HOROVOD_VERSION-torch$TORCH_VERSION-py$pyver-$flavour-gpuops$gpu_ops"
  wheel_dir="$cache/wheels/$key"
  local major="${tcuda%%.*}"
  dali_package="nvidia-dali-cuda${major:-13}0"  # cuda130 for CUDA 13, cuda120 for CUDA 12; CPU torch: cuda130
}
horovod_ok() {  # the installed Horovod is the wanted version, with NCCL exactly when wanted
  local nccl=False; [ "$gpu_ops" = NCCL ] && nccl=True
  "$venv/bin/python" -c "import horovod, horovod.torch as h; assert horovod.__version__ == '$HOROVOD_VERSION'; \
assert bool(h.nccl_built()) == $nccl" 2>/dev/null
}
if [ "$dry_run" = 1 ]; then
  plan
  echo "torch CUDA:      $(torch_cuda || true) (torch $TORCH_VERSION)"
  echo "CUDA toolkit:    ${cuda_home:-none}${toolkit:+ (release $toolkit)}"
  if [ "$gpu_ops" = NCCL ]; then
    echo "Horovod build:   NCCL GPU operations + Gloo + MPI, against torch's NCCL at $(nccl_root || true)"
  else
    why="no CUDA toolkit"
    [ -n "$cuda_home" ] && why="toolkit $toolkit, torch CUDA $(torch_cuda)"
    [ -n "${HOROVOD_GPU_OPERATIONS:-}" ] && why="HOROVOD_GPU_OPERATIONS=$HOROVOD_GPU_OPERATIONS"
    echo "Horovod build:   CPU operations (Gloo + MPI), no NCCL ($why)"
  fi
  echo "wheel cache:     $wheel_dir ($(ls "$wheel_dir"/horovod-*.whl >/dev/null 2>&1 && echo cached || echo 'not built yet'))"
  echo "installed:       $(horovod_ok && echo 'matches, no rebuild' || echo 'missing or another build: would install')"
  echo "DALI:            $dali_package==$DALI_VERSION"
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
"${pip[@]}" install --upgrade "pip<26.2" setuptools wheel "packaging<=26.3"  # DALI 2.4 wants packaging <= 26.3
"${pip[@]}" install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

# --- Horovod: built once per (horovod, torch, python, cuda, gpu ops) and cached outside the repository ----
plan
if ! horovod_ok; then
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
    if [ "$gpu_ops" = NCCL ]; then
      # torch's wheels ship nccl.h and libnccl.so.2 (nvidia-nccl-cu13) but no libnccl.so, which Horovod's
      # FindNCCL looks for: link against a private libnccl.so -> libnccl.so.2; the rpath finds it at run time.
      nccl="$(nccl_root)"
      nccl_so="$(ls "$nccl"/lib/libnccl.so.* 2>/dev/null | head -1)"
      [ -f "$nccl/include/nccl.h" ] && [ -n "$nccl_so" ] \
        || die "a CUDA toolkit is present but torch's NCCL (nvidia-nccl-cu13: nccl.h, libnccl.so.2) is not at '$nccl'; HOROVOD_GPU_OPERATIONS=none builds without NCCL"
      mkdir -p "$build_tmp/nccl" && ln -s "$nccl_so" "$build_tmp/nccl/libnccl.so"
      build_env+=(HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_NCCL_LINK=SHARED HOROVOD_NCCL_INCLUDE="$nccl/include"
                  HOROVOD_NCCL_LIB="$build_tmp/nccl" LDFLAGS="-Wl,-rpath,$nccl/lib ${LDFLAGS:-}")
    fi
    mkdir -p "$wheel_dir"
    # HOROVOD_GPU_OPERATIONS=none (ours) means: no GPU operations; Horovod itself knows only NCCL/MPI
    # --no-cache-dir: pip would otherwise hand back a wheel it built earlier from the same sdist, whatever
    # the build variables now say (a CPU build under the NCCL key)
    env -u HOROVOD_GPU_OPERATIONS "${build_env[@]}" "${pip[@]}" wheel --no-cache-dir --no-build-isolation --no-deps \
        --no-binary horovod \
        "horovod==$HOROVOD_VERSION" -w "$build_tmp/wheel" > "$build_tmp/build.log" 2>&1 \
      || { tail -40 "$build_tmp/build.log" >&2; die "Horovod build failed; full log: $build_tmp/build.log"; }
    mv "$build_tmp"/wheel/horovod-*.whl "$wheel_dir/"
    rm -rf "$build_tmp"
  else
    log "using cached Horovod wheel $wheel_dir"
  fi
  "${pip[@]}" install --no-deps --force-reinstall "$wheel_dir"/horovod-*.whl
  "${pip[@]}" install cffi cloudpickle psutil pyyaml  # Horovod's own runtime deps
  horovod_ok || die "the Horovod of $wheel_dir is not the wanted build (GPU operations: $gpu_ops); remove that directory and rerun"
fi

# --- the rest and the package itself -------------------------------------------------------------
# The [hpc] extra, as this script builds it: Horovod (above), mpi4py, DALI of torch's CUDA. One DALI flavour only:
# each ships nvidia/dali, and two CUDA stacks in one process is what the flavour match avoids.
for other in $("$venv/bin/python" -m pip list --format=freeze 2>/dev/null | sed -n 's/^\(nvidia-dali-cuda[0-9]*\)==.*/\1/p'); do
  [ "$other" = "$dali_package" ] || { log "removing $other (torch uses CUDA $(torch_cuda))"; "${pip[@]}" uninstall -y "$other"; }
done
"${pip[@]}" install "$dali_package==$DALI_VERSION" mpi4py h5py
"${pip[@]}" install -e "$repo[plots,test,peers]"

# --- verify ------------------------------------------------------------------------------------
"$venv/bin/horovodrun" --check-build
"$venv/bin/python" -c 'import horovod.torch, mpi4py, h5py, nvidia.dali, pandas, tensorboard, cleanlab, law_hpc; print("[setup_env] imports ok")'
echo "$stamp" > "$stamp_file"
log "done: activate with 'source $venv/bin/activate'"
