"""Properties and the readers/writers of spec files."""

from verikit.core.property import Box, Case, Conjunction, Property

__all__ = ["Box", "Case", "Conjunction", "Property"]
