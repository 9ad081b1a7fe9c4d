#!/bin/sh
# A fault-injected verifier (fake_witness): see faulty.py. Python: $VERIKIT_PYTHON or python3.
exec "${VERIKIT_PYTHON:-python3}" "$(dirname "$0")/faulty.py" fake_witness "$@"
