#!/usr/bin/env bash
# The MPI lane (tests/mpi.rs): `ire train` under `mpirun -n 2` on this machine — two processes
# train bit for bit what one process with two devices trains, a rank that dies ends the job and
# the run resumes, ranks with different configs stop with one error, a 2-process run resumes on
# 1 process, a second job on a run in use is refused, SIGTERM stops every rank with one
# checkpoint. Installs OpenMPI and libclang (rsmpi's bindgen needs it) with apt when missing.
#
#   tools/test-mpi.sh               # lints with the feature, builds and runs the lane
set -euo pipefail
cd "$(dirname "$0")/.."

have_libclang() { compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" >/dev/null || compgen -G "/usr/lib/x86_64-linux-gnu/libclang*.so*" >/dev/null; }
# mpicc comes with the development files (libopenmpi-dev), which rsmpi's build reads.
if ! command -v mpirun >/dev/null || ! command -v mpicc >/dev/null || ! have_libclang; then
    echo "== installing OpenMPI and libclang (openmpi-bin, libopenmpi-dev, libclang-dev)"
    sudo=""
    [[ $(id -u) == 0 ]] || sudo=sudo
    install() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openmpi-bin libopenmpi-dev libclang-dev >/dev/null; }
    install || { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && install; } ||
        { echo "test-mpi: could not install openmpi-bin, libopenmpi-dev and libclang-dev with apt-get" >&2; exit 1; }
fi
echo "   $(mpirun --version 2>&1 | head -1)"

echo "== cargo clippy --features mpi -- -D warnings"
cargo clippy -p ire-train -p ire-cli --features ire-cli/mpi --all-targets -- -D warnings

echo "== building the lane (cargo test -p ire-cli --features mpi --test mpi)"
start=$SECONDS
mkdir -p target
cargo test -p ire-cli --features mpi --test mpi --no-run >target/mpi-build.log 2>&1 ||
    { tail -30 target/mpi-build.log; echo "test-mpi: the build failed; log: target/mpi-build.log" >&2; exit 1; }
echo "   built in $((SECONDS - start)) s"
start=$SECONDS
cargo test -p ire-cli --features mpi --test mpi
echo "   ran in $((SECONDS - start)) s"
