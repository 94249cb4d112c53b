#!/usr/bin/env bash
# The runs of the fair comparison on Fashion-MNIST (docs/claims.md), all on the CPU. Every call
# resumes: finished records are skipped, a run stopped mid-way continues from its last epoch.
# Run it from a checkout that does not move under it (`--jobs` workers import tkd afresh).
# Usage: bash tools/fair_grid.sh [stage ...]
#   1  seeds 2-5 of the paper's rows, which no choice changes (ce-wd0.007, kd-t4, triplet at
#      the paper's rate 0.01)
#   2  the seed-1 runs the choices need (`python -m tkd fair-plan 2`): every candidate setting,
#      then each method's learning rates at its chosen setting, a larger margin while the
#      largest is best, the teacher-free control at the mined triplet's rate; repeated until
#      every choice is made
#   3  seeds 2-5 of every chosen (setting, rate), of the control, of the mined triplet at
#      0.01 and of each untuned method at its chosen setting (`python -m tkd fair-plan 3`)
#   4  every other run that was trained on an H200 (preset fashion-h200), again on the CPU
#      (`python -m tkd fair-plan 4`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
run() { "$PY" -m tkd reproduce --preset fashion --jobs 2 --threads 1 --no-figures "$@"; }
plan() {  # each line of `fair-plan`: "<seeds...> <experiments...>"; runs it, or fails if empty
    local lines ran=1
    lines=$("$PY" -m tkd fair-plan "$1")
    while read -r line; do
        [ -z "$line" ] && continue
        ran=0
        read -r -a words <<< "$line"
        local seeds=() names=()
        for w in "${words[@]}"; do [[ $w =~ ^[0-9]+$ ]] && seeds+=("$w") || names+=("$w"); done
        run --seeds "${seeds[@]}" --experiments "${names[@]}"
    done <<< "$lines"
    return $ran
}
for stage in "${@:-1 2 3 4}"; do
    case $stage in
        1) run --seeds 2 3 4 5 --experiments ce-wd0.007 kd-t4 triplet ;;
        2) for _ in 1 2 3 4 5; do plan 2 || break; done
           left=$("$PY" -m tkd fair-plan 2)
           if [ -n "$left" ]; then echo "stage 2 is not complete; still needed: $left" >&2; exit 1; fi ;;
        3) plan 3 || true ;;
        4) plan 4 || true ;;
        *) echo "unknown stage $stage (1-4)" >&2; exit 2 ;;
    esac
done
