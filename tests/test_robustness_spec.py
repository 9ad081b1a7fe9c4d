"""Robustness specs (function and JSON file) and `load_spec` format detection and size checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from verikit.core.errors import SpecError
from verikit.spec.load import check_sizes, load_spec, spec_format
from verikit.spec.robustness import FORMAT, read_robustness_spec, robustness_property
from verikit.spec.vnnlib import parse_vnnlib, write_vnnlib

X = np.array([[0.0, 0.5], [0.25, 1.0]])


def test_box_and_disjuncts() -> None:
    prop = robustness_property(X, 1, 0.1, num_classes=3)
    (case,) = prop.cases
    np.testing.assert_array_equal(case.box.lower, X.reshape(-1) - 0.1)
    np.testing.assert_array_equal(case.box.upper, X.reshape(-1) + 0.1)
    assert (prop.n_inputs, prop.n_outputs) == (4, 3)
    np.testing.assert_array_equal(case.disjuncts[0].C, [[-1.0, 1.0, 0.0]])  # y_1 - y_0 <= 0
    np.testing.assert_array_equal(case.disjuncts[1].C, [[0.0, 1.0, -1.0]])  # y_1 - y_2 <= 0
    assert case.satisfied_disjunct(np.array([0.0, 1.0, 0.5])) is None  # label strictly best: no violation
    assert case.satisfied_disjunct(np.array([0.0, 1.0, 1.0])) == 1  # a tie counts as a violation


def test_clip_and_normalisation() -> None:
    prop = robustness_property(X, 0, 0.5, num_classes=2, lower=0.0, upper=1.0, mean=0.5, std=0.25)
    (case,) = prop.cases
    raw_low = np.clip(X.reshape(-1) - 0.5, 0, 1)
    raw_high = np.clip(X.reshape(-1) + 0.5, 0, 1)
    np.testing.assert_array_equal(case.box.lower, (raw_low - 0.5) / 0.25)
    np.testing.assert_array_equal(case.box.upper, (raw_high - 0.5) / 0.25)
    assert len(prop.notes) == 3


@pytest.mark.parametrize("norm", ["inf", "Linf", np.inf, float("inf")])
def test_linf_norm_spellings(norm) -> None:
    robustness_property(X, 0, 0.1, num_classes=2, norm=norm)


@pytest.mark.parametrize("norm", [1, "1", "fro", 3.0])
def test_other_norms_are_refused(norm) -> None:
    with pytest.raises(SpecError, match="only the L-inf ball"):
        robustness_property(X, 0, 0.1, num_classes=2, norm=norm)


@pytest.mark.parametrize("norm", [2, "2", "l2", 2.0])
def test_an_l2_norm_gives_a_ball_inside_its_box(norm) -> None:
    prop = robustness_property(X, 0, 0.1, num_classes=2, norm=norm, lower=0.0, upper=1.0, mean=0.5, std=0.25)
    (case,) = prop.cases
    assert case.region is not None and case.region.kind == "l2-ball"
    assert case.region.radius >= 0.1 / 0.25 and case.region.radius < 0.1 / 0.25 * (1 + 1e-12)
    assert np.allclose(case.region.center, (np.asarray(X).reshape(-1) - 0.5) / 0.25)
    assert case.box.contains(case.region.center)


def test_an_l2_ball_with_per_channel_std_is_refused() -> None:
    x = np.zeros((2, 2))
    with pytest.raises(SpecError, match="ellipsoid"):
        robustness_property(x, 0, 0.1, num_classes=2, norm=2, std=np.array([[1.0, 2.0], [1.0, 2.0]]))


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"label": 3}, "outside 0..2"),
        ({"label": True}, "label must be an integer"),
        ({"eps": -0.1}, "epsilon"),
        ({"eps": float("nan")}, "epsilon"),
        ({"num_classes": 1}, "num_classes"),
        ({"upper": 0.9}, "outside the clip range"),
        ({"std": 0.0}, "std must be finite and > 0"),
        ({"mean": [1.0, 2.0, 3.0]}, "does not broadcast"),
    ],
)
def test_bad_arguments(kwargs: dict, fragment: str) -> None:
    arguments = {"label": 0, "eps": 0.1, "num_classes": 3} | kwargs
    label, eps = arguments.pop("label"), arguments.pop("eps")
    with pytest.raises(SpecError, match=fragment):
        robustness_property(X, label, eps, **arguments)


def test_robustness_property_survives_a_vnnlib_round_trip() -> None:
    prop = robustness_property(X, 2, 0.03, num_classes=4, lower=0.0, upper=1.0)
    back = parse_vnnlib(write_vnnlib(prop))
    assert back.cases[0].box.same_as(prop.cases[0].box)
    for a, b in zip(back.cases[0].disjuncts, prop.cases[0].disjuncts):
        np.testing.assert_array_equal(a.C, b.C)


# ----- the JSON file -----


def write_spec(folder: Path, **fields) -> Path:
    spec = {"format": FORMAT, "input": X.tolist(), "label": 1, "epsilon": 0.1, "num_classes": 3} | fields
    spec = {key: value for key, value in spec.items() if value is not None}
    path = folder / "spec.json"
    path.write_text(json.dumps(spec, indent=2))
    return path


def test_json_spec_inline_input(tmp_path: Path) -> None:
    path = write_spec(tmp_path, clip=[0.0, 1.0], description="two by two", _comment="ignored")
    prop = read_robustness_spec(path)
    expected = robustness_property(X, 1, 0.1, num_classes=3, lower=0.0, upper=1.0)
    assert prop.cases[0].box.same_as(expected.cases[0].box)
    assert prop.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prop.source == str(path)


def test_json_spec_input_file_shape_and_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0.1, 0.9, (3, 2, 2))
    np.save(tmp_path / "x.npy", image)
    path = write_spec(tmp_path, input=None, input_file="x.npy", input_shape=[1, 3, 2, 2], clip=[0, 1],
                      mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.5], epsilon=0.05)
    prop = read_robustness_spec(path)
    mean = np.array([0.5, 0.4, 0.3]).reshape(3, 1, 1)
    std = np.array([0.2, 0.25, 0.5]).reshape(3, 1, 1)
    expected_low = ((np.clip(image - 0.05, 0, 1) - mean) / std).reshape(-1)
    np.testing.assert_allclose(prop.cases[0].box.lower, expected_low, rtol=0, atol=0)
    first_hash = prop.sha256
    np.save(tmp_path / "x.npy", image + 0.01)
    assert read_robustness_spec(path).sha256 != first_hash  # the input file's bytes are part of the identity


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"epsilson": 0.1}, "unknown key 'epsilson'"),
        ({"format": "other/1"}, "key 'format'"),
        ({"format": None}, "key 'format' is missing"),
        ({"label": None}, "key 'label' is missing"),
        ({"label": 1.5}, "key 'label'"),
        ({"label": 7}, "key 'label'"),
        ({"epsilon": "0.1"}, "key 'epsilon'"),
        ({"num_classes": 1}, "key 'num_classes'"),
        ({"clip": [1.0, 0.0]}, "key 'clip'"),
        ({"clip": [0.0]}, "key 'clip'"),
        ({"input": [[1, 2], [3]]}, "key 'input'"),
        ({"input": None}, "exactly one of the keys 'input' and 'input_file'"),
        ({"input_file": "x.npy"}, "exactly one of the keys"),
        ({"input": None, "input_file": "missing.npy"}, "key 'input_file'"),
        ({"input_shape": [3, 3]}, "key 'input_shape'"),
        ({"mean": [0.1, 0.2, 0.3]}, "key 'mean'"),
        ({"norm": [2]}, "key 'norm'"),
        ({"norm": "l1"}, "only the L-inf ball"),
    ],
)
def test_malformed_json_specs_name_the_key(tmp_path: Path, fields: dict, fragment: str) -> None:
    path = write_spec(tmp_path, **fields)
    with pytest.raises(SpecError, match=fragment):
        read_robustness_spec(path)


def test_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "format": "verikit-robustness/1",\n  "label": 1,,\n}')
    with pytest.raises(SpecError, match=r"bad.json:3:\d+: invalid JSON"):
        read_robustness_spec(path)


# ----- load_spec -----

VNNLIB = (
    "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
    "(assert (>= X_0 0))(assert (<= X_0 1))\n(assert (<= Y_0 0))\n"
)


def test_load_spec_detects_the_format(tmp_path: Path) -> None:
    json_path = write_spec(tmp_path)
    assert spec_format(json_path) == "robustness-json"
    assert load_spec(json_path, n_inputs=4, n_outputs=3).n_inputs == 4
    vnnlib_path = tmp_path / "p.vnnlib"
    vnnlib_path.write_text(VNNLIB)
    assert spec_format(vnnlib_path) == "vnnlib"
    prop = load_spec(vnnlib_path, n_inputs=1, n_outputs=1)
    assert prop.sha256 == hashlib.sha256(vnnlib_path.read_bytes()).hexdigest()


def test_load_spec_routes_vnnlib_2_to_its_reader(tmp_path: Path) -> None:
    path = tmp_path / "v2.vnnlib"
    path.write_text(
        "; a 2.0 file\n(declare-network acas\n  (declare-input X Real [5])\n  (declare-output Y Real [5]))\n"
        "(assert (<= X[0] 1.0))\n"
    )
    assert spec_format(path) == "vnnlib2"


def test_load_spec_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "absent.vnnlib")
    with pytest.raises(SpecError, match="directory"):
        load_spec(tmp_path)


def test_size_check_messages(tmp_path: Path) -> None:
    path = tmp_path / "p.vnnlib"
    path.write_text(VNNLIB)
    with pytest.raises(SpecError, match="spec declares 1 inputs but model X has 784"):
        load_spec(path, n_inputs=784, n_outputs=1, model_name="model X")
    prop = load_spec(path)
    with pytest.raises(SpecError, match="spec declares 1 outputs but the model has 10"):
        check_sizes(prop, 1, 10)
    check_sizes(prop, None, None)
