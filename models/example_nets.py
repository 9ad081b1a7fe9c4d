"""Networks, training and ONNX writing for the bundled examples (used by build_examples.py).

Everything here is deterministic: data split and shuffles are seeded, training runs on one CPU thread
with torch's deterministic algorithms, and ONNX files are written node by node with onnx.helper.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

OPSET = 13
IR_VERSION = 8  # loads in every onnxruntime >= 1.10
PRODUCER = "verikit models/build_examples.py"


def load_digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, pixels scaled to [0, 1]: (x_train, y_train, x_test, y_test).

    x arrays are float32 (N, 64); the split is 75/25, stratified, random_state=0.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return x_train, y_train, x_test, y_test


class ImageInput(nn.Module):
    """Reshapes flat (B, 64) inputs to images (B, 1, 8, 8); not written to ONNX (the CNN input is an image)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, 1, 8, 8)


def make_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)
    )


def make_cnn() -> nn.Sequential:
    return nn.Sequential(
        ImageInput(),
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 10),
    )  # fmt: skip


def make_cnn_bn_pool() -> nn.Sequential:
    return nn.Sequential(
        ImageInput(),
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 10),
    )  # fmt: skip


class MaxMin(nn.Module):
    """The MaxMin activation (GroupSort of groups of two): the last axis cut into halves a, b, then
    [max(a, b), min(a, b)]. 1-Lipschitz and gradient-norm preserving; written to ONNX as two Slices, Max,
    Min and Concat."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]
        return torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=-1)


def make_maxmin() -> nn.Sequential:
    """64 → 64 → 64 → 10 with MaxMin; trained with orthogonal weights (train(..., orthogonal=True))."""
    return nn.Sequential(nn.Linear(64, 64), MaxMin(), nn.Linear(64, 64), MaxMin(), nn.Linear(64, 10))


def make_tiny_relu() -> nn.Sequential:
    """y = relu(x0 + x1) - relu(x0 - x1): integer weights, zero biases, exact answers by hand."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, -1.0]]))
        net[2].bias.zero_()
    return net.eval()


def train(
    net: nn.Sequential, x: np.ndarray, y: np.ndarray, *, seed: int, epochs: int, lr: float = 3e-3,
    orthogonal: bool = False,
) -> nn.Sequential:
    """Adam on cross-entropy, batch 64, seeded init and shuffles; returns the net in eval mode.
    orthogonal: every Linear's weight is kept orthogonal (torch's parametrization) while training, then
    stored as a plain weight (orthogonal up to float32 rounding)."""
    torch.manual_seed(seed)
    for module in net.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()  # re-initialise under the seed
    linears = [module for module in net.modules() if isinstance(module, nn.Linear)] if orthogonal else []
    for module in linears:
        nn.utils.parametrizations.orthogonal(module)
    shuffle = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=shuffle)
        for start in range(0, len(xt), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(net(xt[batch]), yt[batch])
            loss.backward()
            optimizer.step()
    for module in linears:
        nn.utils.parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return net.eval()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.argmax(logits, axis=1) == labels).mean())


def torch_logits(net: nn.Module, x: np.ndarray) -> np.ndarray:
    """float32 logits (N, n_outputs) of the torch model for flat inputs (N, n_inputs)."""
    with torch.no_grad():
        return net(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()


def _array(value: torch.Tensor) -> np.ndarray:
    if value.dtype == torch.int64:
        return value.detach().cpu().numpy()
    return value.detach().cpu().numpy().astype(np.float32)


def weights_shape_last(net: nn.Sequential, index: int) -> int:
    """The width of the tensor entering net[index]: the out_features of the last Linear before it."""
    linear = next(m for m in reversed(list(net)[:index]) if isinstance(m, nn.Linear))
    return int(linear.out_features)


def to_onnx(
    net: nn.Sequential, *, name: str, input_shape: list, output_shape: list, doc: str
) -> onnx.ModelProto:
    """Writes a Sequential of Linear/Conv2d/BatchNorm2d/ReLU/MaxPool2d/Flatten as an ONNX graph."""
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    current = "input"
    for index, module in enumerate(net):
        out = f"t{index}"

        def weight(suffix: str, value: torch.Tensor) -> str:
            key = f"layer{index}.{suffix}"
            weights.append(numpy_helper.from_array(_array(value), key))
            return key

        if isinstance(module, ImageInput):
            continue
        if isinstance(module, nn.Linear):
            inputs = [current, weight("weight", module.weight), weight("bias", module.bias)]
            nodes.append(helper.make_node("Gemm", inputs, [out], transB=1))
        elif isinstance(module, nn.Conv2d):
            inputs = [current, weight("weight", module.weight), weight("bias", module.bias)]
            pad_h, pad_w = module.padding
            nodes.append(
                helper.make_node(
                    "Conv", inputs, [out], kernel_shape=list(module.kernel_size),
                    strides=list(module.stride), pads=[pad_h, pad_w, pad_h, pad_w],
                )
            )  # fmt: skip
        elif isinstance(module, nn.BatchNorm2d):
            inputs = [current, weight("scale", module.weight), weight("bias", module.bias)]
            inputs += [weight("mean", module.running_mean), weight("var", module.running_var)]
            nodes.append(helper.make_node("BatchNormalization", inputs, [out], epsilon=module.eps))
        elif isinstance(module, nn.ReLU):
            nodes.append(helper.make_node("Relu", [current], [out]))
        elif isinstance(module, nn.MaxPool2d):
            kernel, stride = module.kernel_size, module.stride
            pool = helper.make_node("MaxPool", [current], [out], kernel_shape=[kernel] * 2, strides=[stride] * 2)
            nodes.append(pool)
        elif isinstance(module, MaxMin):
            half = weights_shape_last(net, index) // 2
            cuts = []
            for part, (start, end) in enumerate(((0, half), (half, 2 * half))):
                bounds = [weight(f"cut{part}.{key}", torch.tensor([v], dtype=torch.int64))
                          for key, v in (("starts", start), ("ends", end), ("axes", -1))]
                cuts.append(f"{out}.half{part}")
                nodes.append(helper.make_node("Slice", [current, *bounds], [cuts[-1]]))
            nodes.append(helper.make_node("Max", cuts, [f"{out}.max"]))
            nodes.append(helper.make_node("Min", cuts, [f"{out}.min"]))
            nodes.append(helper.make_node("Concat", [f"{out}.max", f"{out}.min"], [out], axis=-1))
        elif isinstance(module, nn.Flatten):
            nodes.append(helper.make_node("Flatten", [current], [out], axis=1))
        else:
            raise TypeError(f"no ONNX writer for {type(module).__name__}")
        current = out
    nodes[-1].output[0] = "output"
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, output_shape)],
        initializer=weights,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER, doc_string=doc
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


_ONNX_NAMES = {nn.Linear: {"weight": "weight", "bias": "bias"}, nn.Conv2d: {"weight": "weight", "bias": "bias"},
               nn.BatchNorm2d: {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}}  # fmt: skip


def load_weights(net: nn.Sequential, model: onnx.ModelProto) -> nn.Sequential:
    """Copies the initializers to_onnx wrote (layer<i>.<name>) back into `net`; returns it in eval mode."""
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    with torch.no_grad():
        for index, module in enumerate(net):
            for attribute, suffix in _ONNX_NAMES.get(type(module), {}).items():
                getattr(module, attribute).copy_(torch.from_numpy(arrays[f"layer{index}.{suffix}"].copy()))
    return net.eval()


def onnx_logits(model_bytes: bytes, x: np.ndarray, input_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """onnxruntime outputs for flat float32 inputs (N, n_inputs); fixed-shape inputs are fed one at a time."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    x = np.asarray(x, dtype=np.float32)
    if input_shape is None:
        return session.run(["output"], {"input": x})[0]
    rows = [session.run(["output"], {"input": row.reshape(input_shape)})[0] for row in x]
    return np.concatenate(rows, axis=0)
