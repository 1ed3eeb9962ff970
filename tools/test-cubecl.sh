#!/usr/bin/env bash
# The CubeCL test lane (crates/ire-optim/tests/cubecl.rs): the training step on burn-wgpu, a CubeCL
# JIT backend with fusion and autotune, against Flex. Without a GPU the kernels run on Mesa's
# lavapipe, a Vulkan driver on the CPU; this script installs it (Debian/Ubuntu: apt) when missing.
#
#   tools/test-cubecl.sh            # build and run the lane once
#   tools/test-cubecl.sh 5          # run it 5 times in a row (flakiness), one line per run
#
# Environment: IRE_CUBECL_ANY_ADAPTER=1 keeps wgpu's own adapter choice (e.g. a real GPU) instead
# of forcing lavapipe.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1}

lvp_icd() { compgen -G "/usr/share/vulkan/icd.d/lvp_icd*.json" | head -1; }
if [[ -z $(lvp_icd) ]]; then
    echo "== installing Mesa's lavapipe (mesa-vulkan-drivers, libvulkan1)"
    sudo=""
    [[ $(id -u) == 0 ]] || sudo=sudo
    install() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null; }
    # A fresh machine may have no package lists yet: refresh them once and retry.
    install || { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && install; } ||
        { echo "test-cubecl: could not install mesa-vulkan-drivers and libvulkan1 with apt-get" >&2; exit 1; }
fi
if [[ -z ${IRE_CUBECL_ANY_ADAPTER:-} ]]; then
    # Only lavapipe, so that the lane runs the same driver on every machine.
    export VK_ICD_FILENAMES; VK_ICD_FILENAMES=$(lvp_icd)
    export CUBECL_WGPU_DEFAULT_DEVICE=Cpu
fi

echo "== building the lane (cargo test -p ire-optim --features wgpu --test cubecl)"
start=$SECONDS
mkdir -p target
cargo test -p ire-optim --features wgpu --test cubecl --no-run >target/cubecl-build.log 2>&1 ||
    { tail -30 target/cubecl-build.log; echo "test-cubecl: the build failed; log: target/cubecl-build.log" >&2; exit 1; }
echo "   built in $((SECONDS - start)) s"
for i in $(seq 1 "$runs"); do
    start=$SECONDS
    if cargo test -q -p ire-optim --features wgpu --test cubecl >"target/cubecl-run-$i.log" 2>&1; then
        echo "run $i: ok in $((SECONDS - start)) s ($(grep -o '[0-9]* passed' "target/cubecl-run-$i.log"))"
    else
        echo "run $i: FAILED in $((SECONDS - start)) s; log: target/cubecl-run-$i.log"
        tail -30 "target/cubecl-run-$i.log"
        exit 1
    fi
done
