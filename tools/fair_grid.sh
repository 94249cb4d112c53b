#!/usr/bin/env bash
# The runs of the fair comparison on Fashion-MNIST (docs/claims.md), all on the CPU. Every call
# resumes: finished records are skipped, a run stopped mid-way continues from its last epoch.
# Run it from a checkout that does not move under it (`--jobs` workers import tkd afresh).
# Usage: bash tools/fair_grid.sh [stage ...]
#   1  seeds 2-5 of the rows no choice changes (ce-wd0.007, kd-t4, triplet at the paper's
#      rate 0.01); the seed-1 candidates of every setting grid whose seed 1 is missing on the
#      CPU; the seed-1 learning rates of the methods whose setting is already chosen; the
#      teacher-free control at seed 1
#   2  the seed-1 runs that depend on stage 1's choices (`python -m tkd fair-plan 2`)
#   3  seeds 2-5 of every chosen (setting, rate) and of the control (`python -m tkd fair-plan 3`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
run() { "$PY" -m tkd reproduce --preset fashion --jobs 2 --threads 1 --no-figures "$@"; }
for stage in "${@:-1 2 3}"; do
    case $stage in
        1) run --seeds 2 3 4 5 --experiments ce-wd0.007 kd-t4 triplet
           run --seeds 1 --experiments triplet-m1 triplet-m2 triplet-m10 triplet-m20 \
               triplet-m40 kd-t2 kd-t8 kd-t4-w0.9 dist-w2 dist-t4-w2 triplet-self
           run --seeds 1 --experiments ce-wd0.007-lr0.003 ce-wd0.007-lr0.03 \
               triplet-batch-hard-lr0.003 triplet-batch-hard-lr0.03 dkd-b4-lr0.003 dkd-b4-lr0.03 ;;
        2|3) while read -r seeds experiments; do
                 [ -n "$experiments" ] && run --seeds $seeds --experiments $experiments
             done < <("$PY" -m tkd fair-plan "$stage") ;;
        *) echo "unknown stage $stage (1-3)" >&2; exit 2 ;;
    esac
done
