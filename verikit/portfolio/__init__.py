"""The portfolio: which engines run, in what order, with what share of one budget.

    options.py   Options (every setting of a run, all recorded in the report) and `--set` parsing
    schedule.py  the stages an Options asks for (engines behind verikit.engines.base.Engine)
    runner.py    verify(network, property, options) -> Result: runs the stages on every open case

Kept light (no torch): the command line reads ENGINES and METHODS from here.
"""

from verikit.engines.lirpa import METHODS

ENGINES = ("attack", "bounds", "bab", "smt")

__all__ = ["ENGINES", "METHODS"]
