#!/usr/bin/env bash
# Branch and bound alone on MNIST-FC (../shared/benchmarks/mnistfc), once with --device cpu and once with
# --device cuda; prints decided counts and domains per second for both.
# Usage: benchmarks/gpu_check.sh [extra bench_bab.py options, e.g. --filter 256x4 --every 1]
# Environment: PYTHON (default .venv/bin/python, else python3), EVERY (default 3: every 3rd of the 90
# instances), TIMEOUT_SCALE (default 0.1 of the VNN-COMP timeouts), THREADS (CPU threads, default 1).
# Writes benchmarks/results/bab_mnistfc-gpu_check-{cpu,cuda}.json and benchmarks/results/gpu_check.json.
# Exits 2 with one line when torch sees no CUDA device; 1 when either run gave a wrong answer.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 2)" 2>/dev/null; then
    echo "gpu_check: torch sees no CUDA device here; nothing measured" >&2
    exit 2
fi
every=${EVERY:-3}
scale=${TIMEOUT_SCALE:-0.1}
threads=${THREADS:-1}
status=0
for device in cpu cuda; do
    "$python" benchmarks/bench_bab.py mnistfc --device "$device" --every "$every" --timeout-scale "$scale" \
        --threads "$threads" --tag "gpu_check-$device" "$@" || status=1
done
"$python" - <<'PY'
import json, pathlib, subprocess
results = pathlib.Path("benchmarks/results")
rows = {}
for device in ("cpu", "cuda"):
    data = json.loads((results / f"bab_mnistfc-gpu_check-{device}.json").read_text())
    rows[device] = data["summary"] | {"device": device}
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError):
    gpu = "unknown"
print(f"{'device':6s} {'instances':>9s} {'correct':>7s} {'wrong':>5s} {'domains':>9s} {'domains/s':>10s}")
for device, row in rows.items():
    print(f"{device:6s} {row['instances']:9d} {row['correct']:7d} {row['wrong']:5d} {row['domains']:9d} "
          f"{row['domains_per_s']:10.1f}")
speedup = rows["cuda"]["domains_per_s"] / max(1e-9, rows["cpu"]["domains_per_s"])
print(f"cuda/cpu domains per second: {speedup:.2f}x  (GPU: {gpu})")
(results / "gpu_check.json").write_text(json.dumps({"gpu": gpu, "runs": rows, "speedup": speedup}, indent=1))
PY
exit $status
