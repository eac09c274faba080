#!/usr/bin/env bash
# Run several bench_recon.py configurations at once (e.g. on one GPU), each in its
# own process with the same dataset, steps, batch size and learning rate, then
# merge their results into OUTDIR/bench_recon.json.
#
#   $ bash benchmarks/recon_parallel.sh runs/ds runs/sweep 3500 8 \
#         "--runs cryoswan" "--runs single-scale" "--runs plain-ae"
#
# (DATASET OUTDIR STEPS MINUTES-CAP, then one quoted argument list per run.)
set -u
ds=$1 out=$2 steps=$3 minutes=$4
shift 4
mkdir -p "$out"
here=$(dirname "$0")
i=0
for args in "$@"; do
    i=$((i + 1))
    # shellcheck disable=SC2086  # each run's arguments are split on purpose
    python "$here/bench_recon.py" --dataset "$ds" --steps "$steps" \
        --minutes "$minutes" --batch-size 64 --lr 2e-3 \
        --checkpoints "$out/checkpoints" --out "$out/run$i.json" $args \
        >"$out/run$i.log" 2>&1 &
done
wait
python "$here/bench_recon.py" --merge "$out"/run*.json --out "$out/bench_recon.json"
