"""The small networks of generated benchmarks: a plain layer list, its torch module and its ONNX bytes.

Shape of every network: [Conv (3x3, padding 1) → act → Flatten] → Dense → act → Dense → act → Dense.
Weights are kept in float64 numpy arrays so that planting can edit them exactly; ONNX gets float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

ACTIVATIONS = ("relu", "tanh", "sigmoid")
ARCHITECTURES = ("mlp", "cnn")
OPSET = 13
IR_VERSION = 8
PRODUCER = "verikit soundness generate"
_ONNX_ACTIVATION = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}
_TORCH_ACTIVATION = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


@dataclass(frozen=True, eq=False)
class Dense:
    weight: np.ndarray  # (out, in)
    bias: np.ndarray  # (out,)


@dataclass(frozen=True, eq=False)
class Conv:
    weight: np.ndarray  # (c_out, c_in, 3, 3); stride 1, padding 1
    bias: np.ndarray  # (c_out,)


@dataclass(frozen=True, eq=False)
class LayeredNet:
    """`input_shape` excludes the batch dim: (n,) for an MLP, (1, s, s) for a CNN."""

    input_shape: tuple[int, ...]
    activation: str
    dense: tuple[Dense, ...]
    conv: Conv | None = None

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_outputs(self) -> int:
        return int(self.dense[-1].weight.shape[0])


class _Module(nn.Module):
    """Flat inputs (B, n_inputs) → logits (B, n_outputs), the layout verikit uses everywhere."""

    def __init__(self, net: LayeredNet, dtype: torch.dtype) -> None:
        super().__init__()
        self.input_shape = net.input_shape
        self.conv = None
        if net.conv is not None:
            c_out, c_in = net.conv.weight.shape[:2]
            self.conv = nn.Conv2d(c_in, c_out, 3, padding=1).to(dtype)
            self.conv.weight.data = torch.as_tensor(net.conv.weight, dtype=dtype).clone()
            self.conv.bias.data = torch.as_tensor(net.conv.bias, dtype=dtype).clone()
        layers = []
        for layer in net.dense:
            linear = nn.Linear(layer.weight.shape[1], layer.weight.shape[0]).to(dtype)
            linear.weight.data = torch.as_tensor(layer.weight, dtype=dtype).clone()
            linear.bias.data = torch.as_tensor(layer.bias, dtype=dtype).clone()
            layers.append(linear)
        self.dense = nn.ModuleList(layers)
        self.act = _TORCH_ACTIVATION[net.activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.act(self.conv(x.reshape(-1, *self.input_shape))).flatten(1)
        for index, linear in enumerate(self.dense):
            x = linear(x)
            if index < len(self.dense) - 1:
                x = self.act(x)
        return x


def to_torch(net: LayeredNet, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A trainable torch module with the net's weights (a copy)."""
    return _Module(net, dtype)


def from_torch(module: nn.Module, net: LayeredNet) -> LayeredNet:
    """`net` with the weights of a module made by `to_torch` (after training)."""

    def array(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().cpu().double().numpy().copy()

    conv = None if module.conv is None else Conv(array(module.conv.weight), array(module.conv.bias))
    dense = tuple(Dense(array(linear.weight), array(linear.bias)) for linear in module.dense)
    return LayeredNet(net.input_shape, net.activation, dense, conv)


def initial_net(
    arch: str, activation: str, input_size: int, num_classes: int, *, hidden: int, channels: int,
    rng: np.random.Generator,
) -> LayeredNet:
    """A freshly initialised net (uniform ±1/sqrt(fan_in), like torch's default, from `rng`)."""

    def uniform(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=shape)

    conv = None
    if arch == "mlp":
        input_shape: tuple[int, ...] = (input_size,)
        features = input_size
    elif arch == "cnn":
        input_shape = (1, input_size, input_size)
        conv = Conv(uniform((channels, 1, 3, 3), 9), uniform((channels,), 9))
        features = channels * input_size * input_size
    else:
        raise ValueError(f"unknown architecture {arch!r} (expected one of {ARCHITECTURES})")
    sizes = [features, hidden, hidden, num_classes]
    dense = tuple(Dense(uniform((sizes[i + 1], sizes[i]), sizes[i]), uniform((sizes[i + 1],), sizes[i]))
                  for i in range(3))
    return LayeredNet(input_shape, activation, dense, conv)


def onnx_bytes(net: LayeredNet, *, name: str, doc: str = "") -> bytes:
    """The net as an ONNX model (float32 weights, input `input` of shape (1, *input_shape))."""
    nodes, weights = [], []
    act = _ONNX_ACTIVATION[net.activation]

    def const(key: str, value: np.ndarray) -> str:
        weights.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), key))
        return key

    current = "input"
    if net.conv is not None:
        nodes.append(helper.make_node("Conv", [current, const("conv.weight", net.conv.weight),
                                               const("conv.bias", net.conv.bias)], ["conv"],
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]))
        nodes.append(helper.make_node(act, ["conv"], ["conv_act"]))
        nodes.append(helper.make_node("Flatten", ["conv_act"], ["flat"], axis=1))
        current = "flat"
    for index, layer in enumerate(net.dense):
        out = f"dense{index}"
        nodes.append(helper.make_node("Gemm", [current, const(f"{out}.weight", layer.weight),
                                               const(f"{out}.bias", layer.bias)], [out], transB=1))
        current = out
        if index < len(net.dense) - 1:
            nodes.append(helper.make_node(act, [out], [f"{out}_act"]))
            current = f"{out}_act"
    nodes[-1].output[0] = "output"
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, *net.input_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, net.n_outputs])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name=PRODUCER, doc_string=doc)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()
