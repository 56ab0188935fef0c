#!/usr/bin/env bash
# One call on a machine with one CUDA GPU: the CUDA-only tests, demo frames/s per precision and
# batch size, one training step per family, each checked against the CPU's output; one table.
# Budget: under 8 minutes (stopped at 470 s). `--dry_run` checks the logic on a CPU-only machine.
# Never run on a GPU yet: no device was lent to this project when it was written.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec timeout 470 "$PY" benchmarks/device_check.py "$@"
