#!/usr/bin/env bash
# GPU readiness, in one call on a lent NVIDIA machine (under 8 minutes on one H200):
#   1. step throughput on CUDA (float32, bf16, compile, CUDA graphs) at batch 64 and 256;
#   2. one short Ray Train run with --use-gpu, recorded in MLflow;
#   3. where two GPUs exist, 2-rank NCCL DDP against 1 rank on the same global batch;
#   4. four trials packed on one GPU with --gpus-per-trial 0.25.
# Figures go to the "## GPU check" section of BENCHMARKS.md and, with the logs, to $OUT (the
# device tool's return folder) when it is set.
#
# The device image has torch, Ray, h5py, scipy, scikit-learn, matplotlib and PyYAML; MLflow and
# Optuna travel as wheels in .whl/, installed into a venv that sees the image's packages. No
# document describes building .whl/ (the README section that did is gone): put there the wheels
# of MLflow, Optuna and whatever of their dependencies the image lacks (installed --no-deps).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}
if [ -d .whl ]; then
  $PY -m venv --system-site-packages /tmp/gpu_venv && PY=/tmp/gpu_venv/bin/python
  $PY -m pip install --quiet --no-index --find-links .whl --no-deps .whl/*.whl
fi
export PYTHONPATH=$PWD RAY_TMPDIR=/tmp/ray_gpu TCWAE_DATA=/tmp/tcwae_data
GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ "$GPUS" -lt 1 ]; then
  echo "gpu_check.sh: no NVIDIA GPU visible (nvidia-smi -L lists none); run it on a GPU machine" >&2
  exit 2
fi
DB="sqlite:///$OUT/gpu_check.db"
LOCATIONS="--tracking-uri $DB --storage $OUT/runs --experiment gpu_check"
SECONDS=0
section=$OUT/gpu_check.md
{
  echo "Command: \`bash bench/gpu_check.sh\` ($(date -u '+%Y-%m-%d %H:%M UTC'))."
  echo "Machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1), $GPUS GPU(s), $(nproc) CPU cores; $($PY -c 'import torch, ray; print(f"torch {torch.__version__}, Ray {ray.__version__}")')."
  echo
} > "$section"

echo "== 1. step throughput" | tee "$OUT/throughput.log"
timeout 300 $PY bench/throughput.py --methods tcwae_mws,tcwae_gan,beta_tcvae --threads 4 \
  --timed-images 4096 --no-write >> "$OUT/throughput.log" 2>&1
status=$?
{
  echo "### 1. Step throughput (exit $status)"
  echo
  sed -n '/^GEMM ceiling/,$p' "$OUT/throughput.log"
  echo
} >> "$section"

echo "== 2. Ray Train --use-gpu" | tee "$OUT/train.log"
start=$SECONDS
timeout 150 $PY pipeline/train.py dsprites --method tcwae_mws --beta 50 --gamma 100 \
  --steps 500 --batch-size 256 --workers 1 --use-gpu --data-source procedural \
  --eval-profile smoke --name gpu-one $LOCATIONS >> "$OUT/train.log" 2>&1
status=$?
{
  echo "### 2. One Ray Train run with --use-gpu (exit $status, $((SECONDS - start)) s)"
  echo
  echo '```'
  tail -n 8 "$OUT/train.log"
  echo '```'
  echo
} >> "$section"

echo "== 3. DDP" | tee "$OUT/ddp.log"
if [ "$GPUS" -ge 2 ]; then
  timeout 120 $PY pipeline/train.py dsprites --method beta_tcvae --steps 50 --batch-size 256 \
    --workers 2 --use-gpu --data-source procedural --eval-profile smoke --name gpu-two \
    $LOCATIONS >> "$OUT/ddp.log" 2>&1
  timeout 120 $PY pipeline/train.py dsprites --method beta_tcvae --steps 50 --batch-size 256 \
    --workers 1 --use-gpu --data-source procedural --eval-profile smoke --name gpu-one-ddp \
    $LOCATIONS >> "$OUT/ddp.log" 2>&1
  ddp=$($PY - "$DB" <<'EOF'
import sys, mlflow
client = mlflow.MlflowClient(sys.argv[1])
runs = {r.info.run_name: r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])}
one, two = runs["gpu-one-ddp"].data.metrics, runs["gpu-two"].data.metrics
print(f"train/loss at step 50: 1 rank {one['train/loss']:.4f}, 2 ranks {two['train/loss']:.4f}, "
      f"relative difference {abs(one['train/loss'] - two['train/loss']) / abs(one['train/loss']):.2e}")
EOF
)
else
  ddp="not run: one GPU on this machine"
fi
{ echo "### 3. 2-rank NCCL DDP against 1 rank"; echo; echo "$ddp"; echo; } >> "$section"

echo "== 4. packed trials" | tee "$OUT/packed.log"
start=$SECONDS
timeout 240 $PY pipeline/sweep.py dsprites --profile smoke --gpus-per-trial 0.25 \
  --max-concurrent 4 $LOCATIONS --name gpu-packed >> "$OUT/packed.log" 2>&1
status=$?
{
  echo "### 4. Trials packed on one GPU (--gpus-per-trial 0.25; exit $status, $((SECONDS - start)) s)"
  echo
  echo '```'
  grep -E "trials|TERMINATED|finished|Current time" "$OUT/packed.log" | tail -n 8
  echo '```'
} >> "$section"

$PY - "$section" <<'EOF'
import sys
sys.path.insert(0, "bench")
from pathlib import Path
from benchmarks_md import BENCHMARKS, replace_section
replace_section(BENCHMARKS, "## GPU check", Path(sys.argv[1]).read_text())
EOF
cp BENCHMARKS.md "$OUT/BENCHMARKS.md"
echo "gpu_check.sh: done in $SECONDS s; figures in BENCHMARKS.md and $OUT"
