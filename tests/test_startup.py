"""Start-up: `--help` and argument errors never import torch (it alone takes about a second to import)."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("torch", "auto_LiRPA", "z3", "matplotlib", "onnxruntime")

# Runs a command's click entry point in a fresh interpreter, then prints which heavy modules got imported.
SCRIPT = """
import sys
from {module} import main
try:
    main({args!r}, prog_name="verikit")
except SystemExit as stop:
    code = stop.code
print("EXIT", code)
print("HEAVY", ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def run_fresh(module: str, args: list[str]) -> tuple[int, list[str]]:
    script = SCRIPT.format(module=module, args=args, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("EXIT", "HEAVY")))
    assert "EXIT" in lines, done.stdout + done.stderr
    return int(lines["EXIT"]), [m for m in lines["HEAVY"].split(",") if m]


@pytest.mark.parametrize("args", [
    ["--help"],
    ["verify", "--help"],
    ["run-instance", "--help"],
    ["verify"],  # missing arguments: a usage error
    ["verify", "a.onnx", "b.vnnlib", "--timeout", "soon"],
    ["run-instance", "v2", "acasxu", "a.onnx", "b.vnnlib", "out.txt", "10"],
])
def test_help_and_usage_errors_import_no_heavy_module(args):
    code, heavy = run_fresh("verikit.cli", args)
    assert code in (0, 2)
    assert heavy == [], f"`verikit {' '.join(args)}` imported {heavy}"


@pytest.mark.parametrize("args", [["--help"], ["verify", "--help"], ["--name"]])
def test_vnnlib_solver_help_imports_no_heavy_module(args):
    code, heavy = run_fresh("verikit.cli.vnnlib_solver", args)
    assert code == 0
    assert heavy == []
