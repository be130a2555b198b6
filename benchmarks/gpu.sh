#!/usr/bin/env bash
# One GPU in minutes: DPS and DAPS on the FFHQ-256 guided-diffusion architecture (random weights) at
# batch 1, at the largest batch that fits and on a lambda grid, fp32 and bf16 (images/hour, GPU memory,
# TFLOP/s against the card's peak), host syncs per step, and a sharded sweep on the embedded world with
# 1 and 4 actors on the one GPU. Writes benchmarks/results/gpu-<device>-<date>.json (and a copy to $OUT
# when set: the device tool returns only $OUT). Installs nothing: .venv's Python when it imports torch,
# else the machine's python3 (its torch, diffusers, ray, pydantic, pyarrow).
#   bash benchmarks/gpu.sh                          (CUDA; under 8 minutes on an H200: budget 420 s + start)
#   bash benchmarks/gpu.sh --device cpu --tiny --out /tmp/x   (the CPU dry run, tested by tests/test_gpu_script.py)
# Other arguments go to `python -m benchmarks.gpu_bench` (--budget-s, --solvers, --precisions, --max-batch, ...).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" >/dev/null 2>&1; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 RAY_ADDRESS=local
ARGS=("$@")
OUTDIR=benchmarks/results
for ((i = 0; i < ${#ARGS[@]}; i++)); do [ "${ARGS[$i]}" = "--out" ] && OUTDIR=${ARGS[$((i + 1))]}; done
case " ${ARGS[*]-} " in *" --out "*) ;; *) ARGS+=(--out "$OUTDIR") ;; esac
case " ${ARGS[*]-} " in *" --budget-s "*) ;; *" --tiny "*) ;; *) ARGS+=(--budget-s 420) ;; esac
echo "python: $PY ($("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1))"
command -v nvidia-smi >/dev/null && nvidia-smi -L
timeout "${GPU_BENCH_TIMEOUT:-470}" "$PY" -m benchmarks.gpu_bench "${ARGS[@]}"
rc=$?
if [ -n "${OUT:-}" ] && [ "$OUT" != "$OUTDIR" ]; then
  mkdir -p "$OUT" && cp "$(ls -t "$OUTDIR"/gpu-*.json 2>/dev/null | head -1)" "$OUT"/ 2>/dev/null
fi
echo "gpu.sh rc=$rc"
exit $rc
