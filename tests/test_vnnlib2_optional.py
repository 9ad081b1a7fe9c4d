"""VNN-LIB 2.0 without the optional `vnnlib` package: detection still works, reading says how to install it."""

import sys

import pytest

from verikit.core.errors import SpecError
from verikit.spec.load import load_spec, spec_format
from verikit.spec.vnnlib2 import INSTALL_HINT, looks_like_vnnlib2

QUERY = ("; comment (declare-const X_0 Real)\n(vnnlib-version <2.0>)\n(declare-network N\n"
         "  (declare-input X real [1])\n  (declare-output Y real [1])\n)\n(assert (<= Y[0] 1.0))\n")


@pytest.mark.parametrize("text, expected", [
    (QUERY, True),
    ("(declare-network N (declare-input X real [1]) (declare-output Y real [1]))", True),
    ("; (vnnlib-version <2.0>)\n(declare-const X_0 Real)", False),
    ("(set-logic QF_LRA)\n(declare-const X_0 Real)", False),
    ("", False),
])
def test_detection_looks_at_the_first_command(text, expected):
    assert looks_like_vnnlib2(text) is expected


def test_without_the_package_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "q.vnnlib"
    path.write_text(QUERY)
    monkeypatch.setitem(sys.modules, "vnnlib", None)  # `import vnnlib` now raises ImportError
    assert spec_format(path) == "vnnlib2"
    with pytest.raises(SpecError, match="needs the optional 'vnnlib' package") as info:
        load_spec(path)
    assert INSTALL_HINT in str(info.value) and str(info.value).startswith(str(path))
