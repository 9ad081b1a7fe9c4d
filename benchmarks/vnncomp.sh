#!/usr/bin/env bash
# Run verikit on a VNN-COMP family from ../shared/benchmarks and score it against the ground truth.
# Usage: benchmarks/vnncomp.sh FAMILY [extra `verikit bench` options]   (FAMILY: test, acasxu, mnistfc)
# Writes benchmarks/results/FAMILY/{results.csv,summary.json,witnesses/}; resumable (delete the folder to rerun).
set -euo pipefail
cd "$(dirname "$0")/.."
family=${1:?usage: benchmarks/vnncomp.sh FAMILY [options]}
shift
shared=${SHARED_BENCHMARKS:-../shared/benchmarks}
out=benchmarks/results/$family
mkdir -p "$out"
start=$(date +%s%N)
set +e
.venv/bin/verikit bench "$shared/$family" --ground-truth "$shared/ground_truth/$family.csv" --out "$out" "$@"
code=$?
set -e
end=$(date +%s%N)
echo "wall clock: $(( (end - start) / 1000000 )) ms (nproc $(nproc))" | tee "$out/wall_clock.txt"
exit $code
