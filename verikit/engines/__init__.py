"""Engines: pure functions `(network, case, budget) -> Outcome`."""
