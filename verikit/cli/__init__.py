"""The `verikit` command line: a thin shell over the library. Exit codes: see verikit.core.errors.ExitCode."""

from verikit.cli import audit_cmd, bench_cmd, gate_cmd, run_instance_cmd, soundness_cmd  # noqa: F401
from verikit.cli import certificate_cmd, demo_cmd, report_cmd, settings_cmd, verify_cmd, witness_cmd  # noqa: F401
from verikit.cli import lipschitz_cmd, nap_cmd, spec_cmd  # noqa: F401
from verikit.cli.base import main

__all__ = ["main"]
