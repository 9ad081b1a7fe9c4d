"""Split with every output in use: one selection op per used output (verikit.onnx.ops.tensor.Split),
equal to onnxruntime, bounded soundly by auto_LiRPA; the piecewise-linear form (a chain) refuses the
branching graph by name instead of guessing."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_factory import GraphBuilder

from verikit.core.property import Box
from verikit.core.pwl import NotPiecewiseLinear
from verikit.engines.lirpa.engine import output_bounds, prepare
from verikit.onnx.load import load_network_bytes
from verikit.onnx.pwl import to_piecewise_linear


def _split_model(sizes: list[int] | None, parts: int, opset: int = 13, width: int = 6) -> bytes:
    """x (1, width) → Split into `parts` (explicit `sizes` or equal) → Relu(last) - first part … concatenated
    in reverse order, so every output is used and its position matters."""
    g = GraphBuilder(0, opset)
    inputs = ["x"] if sizes is None else ["x", g.const(sizes)]
    extra = {"num_outputs": parts} if opset >= 18 and sizes is None else {}
    g.op("Split", *inputs, axis=1, outputs=parts, **extra)
    names = list(g.nodes[-1].output)
    last = g.op("Relu", names[-1])
    return g.build((1, width), g.op("Concat", last, *reversed(names[:-1]), axis=1))


@pytest.mark.parametrize("sizes,parts,opset,width", [([1, 3, 2], 3, 13, 6), (None, 3, 13, 6), ([4, 2], 2, 13, 6),
                                                     (None, 3, 18, 7)])  # 7 = 3 + 3 + 1: the last part smaller
def test_every_split_output_matches_onnxruntime_and_is_bounded_soundly(sizes, parts, opset, width):
    network = load_network_bytes(_split_model(sizes, parts, opset, width))
    rng = np.random.default_rng(parts)
    x = rng.normal(size=(64, width)).astype(np.float32)
    import torch

    with torch.no_grad():
        ours = network.module(torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours, network.replay(x), rtol=0, atol=0)
    box = Box(np.full(width, -1.0), np.full(width, 1.0))
    lower, upper = output_bounds(prepare(network), box)
    outputs = network.replay(box.sample(512, rng).astype(np.float32))
    assert (outputs >= lower - 1e-6).all() and (outputs <= upper + 1e-6).all()


def test_the_piecewise_linear_chain_refuses_a_branching_split():
    network = load_network_bytes(_split_model([1, 3, 2], 3))
    with pytest.raises(NotPiecewiseLinear, match="branches"):
        to_piecewise_linear(network)
