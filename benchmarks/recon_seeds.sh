#!/usr/bin/env bash
# Cryo-SWAN against the two baselines at equal bits, at equal steps and at equal
# wall time, once per seed (the seeds run side by side, one process and one CPU
# thread each), then every run merged into OUTDIR/bench_recon_seeds.json.
# Per seed: the three models for STEPS steps each; then the single-scale VQ-VAE and
# the plain autoencoder again for as long as Cryo-SWAN's STEPS steps took (its
# training loop's own seconds), named "<model>@time". Run it from the repository
# root:
#
#   $ bash benchmarks/recon_seeds.sh runs/ds runs/seeds 700 bf16 0 1
#
# (DATASET OUTDIR STEPS PRECISION, then the seeds.)
set -u
if [ ! -f benchmarks/bench_recon.py ]; then
    echo "run this from the repository root: bash benchmarks/recon_seeds.sh ..." >&2
    exit 2
fi
ds=$1 out=$2 steps=$3 precision=$4
shift 4
mkdir -p "$out"
common=(--dataset "$ds" --precision "$precision" --threads 1 --batch-size 16
    --checkpoints "$out/checkpoints")
pids=()
for seed in "$@"; do
    rm -f "$out/steps_s$seed.json" "$out/time_s$seed.json"  # no stale results
    (
        python -m benchmarks.bench_recon "${common[@]}" --seed "$seed" \
            --steps "$steps" --runs cryoswan single-scale plain-ae --tag "@s$seed" \
            --out "$out/steps_s$seed.json" >"$out/steps_s$seed.log" 2>&1 || exit 1
        minutes=$(python -c "import json,sys; r=json.load(open(sys.argv[1]))['runs']; \
print(r['cryoswan@s$seed']['loop_seconds'] / 60)" "$out/steps_s$seed.json") || exit 1
        python -m benchmarks.bench_recon "${common[@]}" --seed "$seed" \
            --steps 1000000 --minutes "$minutes" --runs single-scale plain-ae \
            --tag "@time@s$seed" --out "$out/time_s$seed.json" \
            >"$out/time_s$seed.log" 2>&1
    ) &
    pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
done
if [ "$failed" -ne 0 ]; then
    echo "a seed's runs failed: see $out/*_s*.log; nothing merged" >&2
    exit 1
fi
files=()
for seed in "$@"; do
    files+=("$out/steps_s$seed.json" "$out/time_s$seed.json")
done
python -m benchmarks.bench_recon --merge "${files[@]}" --out "$out/bench_recon_seeds.json"
