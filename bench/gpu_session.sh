#!/usr/bin/env bash
# Every GPU measurement and run of this project in one call on a lent GPU machine:
#   1. bench/gpu_graph_check.py: the captured step against the eager one, every strategy;
#   2. the Fashion-MNIST grid (teacher first), stopped by SIGINT after GRID_SECONDS (runs go
#      seed by seed, so a stopped grid holds whole seeds of every method);
#   3. bench/throughput.py and bench/grid.py.
# Results land in $OUT: fashion.tgz (records), logs, JSON. On the device machine:
#   TKD_GIT_COMMIT=<sha> bash bench/gpu_session.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TKD_DATA=$PWD/.data TKD_GIT_DIRTY=${TKD_GIT_DIRTY:-0}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; LOG=$OUT/session.log
GRID_SECONDS=${GRID_SECONDS:-310}; JOBS=${JOBS:-8}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$LOG"
# CUDA MPS lets the kernels of several worker processes run side by side; off if it fails.
if command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d 2>/dev/null; then
    if timeout 60 python -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
        echo "MPS: on" | tee -a "$LOG"
    else
        echo quit | nvidia-cuda-mps-control; echo "MPS: failed, off" | tee -a "$LOG"
    fi
else
    echo "MPS: not available" | tee -a "$LOG"
fi
timeout 60 python bench/gpu_graph_check.py --images 5000 --epochs 2 2>&1 | tee -a "$LOG"
start=$(date +%s)
timeout -s INT -k 20 "$GRID_SECONDS" python -m tkd reproduce --preset fashion --jobs "$JOBS" \
    --no-figures > "$OUT/grid.log" 2>&1
echo "grid: exit $?, $(( $(date +%s) - start )) s" | tee -a "$LOG"
tar czf "$OUT/fashion.tgz" $(find results/fashion -name '*.json' -o -name '*.csv') \
    $(find results/fashion/teacher results/fashion/ce results/fashion/kd-t4 \
      results/fashion/triplet -name '1.pt' -o -name 'model.pt' 2>/dev/null)
timeout 75 python bench/throughput.py --device cuda --images 55000 --epochs 2 \
    --out "$OUT/throughput.json" > "$OUT/throughput.log" 2>&1
echo "throughput: exit $?" | tee -a "$LOG"
timeout 100 python bench/grid.py --device cuda --preset fashion --epochs 1 --jobs 1 8 \
    --mode graph eager --out "$OUT/grid_bench.json" > "$OUT/grid_bench.log" 2>&1
echo "grid bench: exit $?; session done" | tee -a "$LOG"
