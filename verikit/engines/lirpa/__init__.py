"""Bound propagation through auto_LiRPA. Light on purpose: importing the package loads neither torch nor
auto_LiRPA, so the CLI and the portfolio can name the methods cheaply."""

METHODS = ("ibp", "crown", "alpha-crown")
"""Bound methods, cheapest first: interval, CROWN, α-CROWN (auto_LiRPA's IBP, CROWN, CROWN-Optimized)."""
