#!/usr/bin/env bash
# One GPU session (the `device` tool of this workplace): retrain the embedded autoencoder and latent
# prior on the GPU, then run the CUDA checks. Writes logs and the new latent weights to $OUT.
#   bash benchmarks/gpu_session.sh            (needs $OUT; wheels for missing packages in .whl/)
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
nvidia-smi -L | tee "$OUT/gpu.txt"; python3 -c "import torch, diffusers; print(torch.__version__, diffusers.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
t0=$(date +%s)
# 1. the autoencoder (selection rule in solvers/embedded/train.py) and the latent prior, on the GPU
# (measured on an H200: ~25 ms per autoencoder step at batch 128, ~38 ms per latent-prior step at
# batch 256; the three candidates plus the prior take ~8 minutes, so give it TRAIN_TIMEOUT=600 alone)
timeout ${TRAIN_TIMEOUT:-330} python3 -m orchestrator.cli train-embedded --stages autoencoder latent --device cuda 2>&1 | tee "$OUT/train.log"
echo "train rc=$? after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/train.log"
tar czf "$OUT/latent_weights.tgz" solvers/embedded/weights/latent
# 2. the solver reference tests with the solvers on CUDA (same tolerances), operators/groups on CUDA
EQUIBENCH_TEST_DEVICE=cuda timeout ${TEST_TIMEOUT:-150} python3 -m pytest -q -p no:cacheprovider -x --timeout 120 \
  tests/test_daps.py tests/test_dps_psld_resample.py tests/test_operators.py tests/test_groups.py -k "not cpu or cuda" 2>&1 | tail -60 > "$OUT/pytest_cuda.log"
echo "pytest rc=$? after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/pytest_cuda.log"
# 3. every solver x regularizer through `equibench solve --device cuda` with the new weights
timeout ${CHECK_TIMEOUT:-150} python3 benchmarks/cuda_check.py --out "$OUT/cuda_check.json" --work /tmp/cuda_check_runs \
  --n 8 --steps 20 > "$OUT/cuda_check.log" 2>&1; echo "cuda_check rc=$?"; tail -5 "$OUT/cuda_check.log"
echo "done after $(( $(date +%s) - t0 )) s"
