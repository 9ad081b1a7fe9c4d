"""Reports: JSON (machine), VNN-COMP result files, and human summaries."""
