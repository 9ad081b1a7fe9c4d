"""Engines: each one class with `name`, `method`, `supports(problem)` and `run(problem, case, budget)`.

See verikit.engines.base for the protocol and verikit.engines.problem for what an engine is given.
"""
