"""Write models/data/digits_test_100.npz: the first 100 samples of the digits test split (held out).

    python models/data/make_digits_sample.py           # (re)write the file
    python models/data/make_digits_sample.py --check   # exit 1 if the committed file differs

The split is the one the example models were trained on the complement of (models/example_nets.py:
scikit-learn's bundled 8x8 digits, pixels/16 in [0, 1], 75/25 stratified, random_state=0), so these
samples were never seen in training. Layout: x float32 (100, 64), y int64 (100,).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from example_nets import load_digits_split  # noqa: E402

TARGET = HERE / "digits_test_100.npz"
COUNT = 100


def build() -> bytes:
    """The .npz bytes (np.savez is deterministic for the same arrays)."""
    _, _, x_test, y_test = load_digits_split()
    buffer = io.BytesIO()
    np.savez(buffer, x=x_test[:COUNT].astype(np.float32), y=y_test[:COUNT].astype(np.int64))
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead")
    args = parser.parse_args(argv)
    data = build()
    if args.check:
        same = TARGET.is_file() and TARGET.read_bytes() == data
        print(f"{TARGET.name}: {'reproducible' if same else 'differs'}")
        return 0 if same else 1
    TARGET.write_bytes(data)
    print(f"wrote {TARGET} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
