#!/bin/sh
# A verifier that answers sat without a witness (like nnenum): see faulty.py. Python: $VERIKIT_PYTHON or python3.
exec "${VERIKIT_PYTHON:-python3}" "$(dirname "$0")/faulty.py" no_witness "$@"
