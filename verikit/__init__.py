"""verikit: verify and audit the robustness of neural networks given as ONNX."""

__version__ = "0.1.0"

import os as _os

# OpenMP threads that spin while they wait turn one other busy process into a 10-30x slowdown (two torch
# threads, one free core: MNIST-FC 256x6's root α-CROWN took 80 s instead of 3 s; benchmarks/bench_omp_wait.py).
# Sleeping waits cost nothing measurable on free cores. Read once, when torch loads its OpenMP runtime, so
# it is set here, before any verikit module imports torch; an explicit setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
