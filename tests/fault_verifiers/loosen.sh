#!/bin/sh
# A fault-injected verifier (loosen): see faulty.py. Python: $VERIKIT_PYTHON or python3.
exec "${VERIKIT_PYTHON:-python3}" "$(dirname "$0")/faulty.py" loosen "$@"
