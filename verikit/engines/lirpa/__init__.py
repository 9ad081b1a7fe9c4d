"""Bound propagation through auto_LiRPA (IBP, CROWN, α-CROWN). Kept light: importing the package loads
neither torch nor auto_LiRPA, so the command line can list the methods cheaply."""

METHODS = ("ibp", "crown", "alpha-crown")
"""The bound methods, cheapest first."""
