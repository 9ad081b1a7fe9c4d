#!/bin/sh
# The honest verifier: verikit's VNN-COMP entry, unchanged. Python: $VERIKIT_PYTHON or python3.
exec "${VERIKIT_PYTHON:-python3}" -m verikit run-instance "$@"
