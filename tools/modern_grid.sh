#!/usr/bin/env bash
# The commands behind the "today's logit KD" rows of the Fashion-MNIST comparison
# (tkd.experiments.MODERN). Every call resumes: finished records are skipped, a run stopped
# mid-way continues from its last epoch. Usage: bash tools/modern_grid.sh [stage ...]
#   1  every candidate setting at seed 1 (the published one of each method first, then the
#      margins of the standardized triplets and DKD's NCKD-weight grid, beta 4, 2, 1)
#   2  seeds 2-3 of each method at its setting chosen on validation
#   3  seeds 4-5 of each method at its chosen setting
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
run() { "$PY" -m tkd reproduce --preset fashion --jobs 2 --threads 1 --no-figures "$@"; }
chosen() {  # the experiment of each MODERN_GRIDS method that is best on validation now
    "$PY" - <<'PY'
from tkd.experiments import MODERN_GRIDS, get_preset
from tkd.records import load_records
from tkd.tables import runs_frame
from tkd.verdict import best_on_validation
runs = runs_frame(load_records(get_preset("fashion")), check=False)
print(" ".join(best_on_validation(runs, grid) or grid[0] for grid in MODERN_GRIDS.values()))
PY
}
for stage in "${@:-1 2 3}"; do
    case $stage in
        1) run --seeds 1 --experiments dkd dist kd-ls triplet-ls triplet-batch-semihard-ls \
               dist-t4 kd-ls-w1 triplet-ls-m0.5 triplet-ls-m2 triplet-batch-semihard-ls-m0.5 \
               triplet-batch-semihard-ls-m2 dkd-b4 dkd-b2 dkd-b1 ;;
        2) run --seeds 2 3 --experiments $(chosen) ;;
        3) run --seeds 4 5 --experiments $(chosen) ;;
        *) echo "unknown stage $stage (1-3)" >&2; exit 2 ;;
    esac
done
