# Commands a newcomer needs first; each mirrors the README.

# Train the default run (AdmIRE, tiny Llama, embedded corpus; offline, a few minutes on 2 cores).
train *ARGS:
    cargo run --release -- train {{ARGS}}

# The test suite (what CI runs, besides fmt/clippy/cuda check).
test:
    cargo test --workspace

# No import cycle between the files of a crate, no function over 80 lines (CI runs it).
check-structure:
    python3 tools/check_structure.py

# Everything CI runs.
ci:
    bash .ci/run

# AdamW baseline on the same data, then compare the two runs.
compare:
    cargo run --release -- train --config configs/tiny-adamw.toml
    cargo run --release -- train --config configs/tiny-admire.toml
    cargo run --release -- compare runs/tiny-adamw runs/tiny-admire --out runs/compare

# The AdmIRE vs AdamW study of docs/results.md (resumable: rerun to continue; `tools/repro.sh status`).
repro *ARGS:
    tools/repro.sh {{ARGS}}

# The CubeCL test lane: the training step on burn-wgpu against Flex, on Mesa's lavapipe (installs it
# with apt when missing). `just test-cubecl 5` runs it five times in a row.
test-cubecl RUNS="1":
    tools/test-cubecl.sh {{RUNS}}

# Check that the CUDA backend compiles (no GPU needed).
check-cuda:
    CUDARC_CUDA_VERSION=13000 cargo check -p ire-cli --features cuda

# Build the CUDA binary for the GPU machine (see tools/gpu-check.sh).
build-cuda:
    CUDARC_CUDA_VERSION=13000 cargo build --release -p ire-cli --features cuda

# Regenerate docs/config.md from the config structs' doc comments (a test fails when it is stale).
config-docs:
    cargo run --release -- config --reference > docs/config.md

# TensorBoard's own reader on a killed-and-resumed run's event files (installs tensorboard into a
# venv outside the clone; in CI).
test-tensorboard:
    tools/test-tensorboard.sh

# The MPI lane: `ire train` under mpirun (installs OpenMPI with apt when missing; in CI).
test-mpi:
    tools/test-mpi.sh
