#!/usr/bin/env bash
# Device check for a machine with one GPU (or TPU) and only a JAX stack (jax, flax, optax,
# numpy; no network): the accelerator benchmark, then 200 training steps of the quick synthetic
# model from batches saved on the CPU machine, compared with the CPU's loss curve
# (scripts/device_check.py). Sized to finish in under 8 minutes on one GPU (not yet run on one:
# no session so far was lent an accelerator).
#
#   python scripts/device_check.py prepare        # first, on the CPU machine (full stack)
#   bash scripts/device_check.sh                  # then, on the accelerator machine
#   bash scripts/device_check.sh --dry-run        # both halves, small, on this CPU (tests)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--dry-run" || "${1:-}" == "--dry" ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  python scripts/device_check.py prepare --out="$out" --steps=6 --batches=2 --batch=4
  python scripts/device_check.py run --data="$out" --conv_impl=xla
  exit
fi
if [[ ! -f device_check_data/batches.npz ]]; then
  echo "device_check_data/batches.npz is missing: run 'python scripts/device_check.py prepare'" \
       "on the CPU machine first" >&2
  exit 2
fi
python -c "import jax; print('devices:', jax.devices())"
python scripts/bench_accelerator.py --models=hrnet_w32 --resolutions=256x192 --ns=2 \
    --dtypes=bfloat16,float32 --batch=32 --iters=10
python scripts/bench_accelerator.py --models=sbl_r50 --resolutions=256x192 --ns=2 \
    --dtypes=bfloat16 --batch=32 --iters=10
python scripts/device_check.py run --data=device_check_data
