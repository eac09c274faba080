#!/usr/bin/env bash
# Run several benchmarks.bench_recon configurations at once (e.g. on one GPU), each
# in its own process with the same dataset, steps, batch size and learning rate,
# then merge their results into OUTDIR/bench_recon.json. Run it from the repository
# root (the runs are `python -m benchmarks.bench_recon`):
#
#   $ bash benchmarks/recon_parallel.sh runs/ds runs/sweep 3500 8 \
#         "--runs cryoswan" "--runs single-scale" "--runs plain-ae"
#
# (DATASET OUTDIR STEPS MINUTES-CAP, then one quoted argument list per run.)
set -u
if [ ! -f benchmarks/bench_recon.py ]; then
    echo "run this from the repository root: bash benchmarks/recon_parallel.sh ..." >&2
    exit 2
fi
ds=$1 out=$2 steps=$3 minutes=$4
shift 4
mkdir -p "$out"
i=0
for args in "$@"; do
    i=$((i + 1))
    # shellcheck disable=SC2086  # each run's arguments are split on purpose
    python -m benchmarks.bench_recon --dataset "$ds" --steps "$steps" \
        --minutes "$minutes" --batch-size 64 --lr 2e-3 \
        --checkpoints "$out/checkpoints" --out "$out/run$i.json" $args \
        >"$out/run$i.log" 2>&1 &
done
wait
python -m benchmarks.bench_recon --merge "$out"/run*.json --out "$out/bench_recon.json"
