"""Independent evidence for the example specs' expected verdicts (used by build_examples.py).

- `ibp_bounds`: interval bound propagation in float64 through a torch Sequential (sound for
  Linear/Conv2d/BatchNorm2d(eval)/ReLU/MaxPool2d/Flatten).
- `crown_lower`: CROWN (backward linear relaxation, CROWN intermediate bounds) in numpy float64 for
  networks of affine layers and ReLUs; convolutions are turned into dense matrices first.
- `pgd_attack`: seeded projected gradient ascent on the robustness margin, to find counterexamples.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from example_nets import ImageInput


def ibp_bounds(net: nn.Sequential, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output bounds (n_outputs,) of `net` over the box lower <= x <= upper (flat (n_inputs,))."""
    net = copy.deepcopy(net).double().eval()
    lo = torch.tensor(np.asarray(lower, np.float64))[None]
    hi = torch.tensor(np.asarray(upper, np.float64))[None]
    with torch.no_grad():
        for module in net:
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.BatchNorm2d)):
                center, radius = (hi + lo) / 2, (hi - lo) / 2
                center = module(center)
                radius = _abs_linear_part(module)(radius)
                lo, hi = center - radius, center + radius
            elif isinstance(module, (nn.ReLU, nn.MaxPool2d, nn.Flatten, ImageInput)):
                lo, hi = module(lo), module(hi)  # monotone
            else:
                raise TypeError(f"no interval rule for {type(module).__name__}")
    return lo[0].numpy(), hi[0].numpy()


def _abs_linear_part(module: nn.Module) -> nn.Module:
    """The module with |weights| and no bias: maps an input radius to a sound output radius."""
    module = copy.deepcopy(module)
    if isinstance(module, nn.BatchNorm2d):
        scale = module.weight / torch.sqrt(module.running_var + module.eps)
        return lambda r: r * scale.abs()[None, :, None, None]
    module.weight.data = module.weight.data.abs()
    module.bias.data.zero_()
    return module


def is_affine_relu(net: nn.Sequential) -> bool:
    """True when every module is affine (Linear, Conv2d, BatchNorm2d, reshapes) or a ReLU."""
    return all(isinstance(m, (nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.Flatten, ImageInput, nn.ReLU)) for m in net)


def dense_layers(net: nn.Sequential, n_inputs: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The affine layers (W (out, in), b (out,)) of a net of affine maps with ReLU between them."""
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    shape: tuple[int, ...] = (n_inputs,)
    pending: list[nn.Module] = []  # consecutive affine modules, composed into one dense layer
    modules = [m for m in copy.deepcopy(net).double().eval()] + [nn.ReLU()]
    for module in modules:
        if not isinstance(module, nn.ReLU):
            if not is_affine_relu(nn.Sequential(module)):
                raise ValueError(f"{type(module).__name__} is not affine; use ibp_bounds")
            pending.append(module)
            continue
        with torch.no_grad():
            affine = nn.Sequential(*pending)
            n_in = int(np.prod(shape))
            basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *shape)
            zero = torch.zeros((1, *shape), dtype=torch.float64)
            bias = affine(zero)
            columns = affine(basis) - bias
            shape = tuple(bias.shape[1:])
            layers.append((columns.reshape(n_in, -1).T.numpy(), bias.reshape(-1).numpy()))
        pending = []
    return layers


def crown_lower(
    layers: list[tuple[np.ndarray, np.ndarray]], C: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """Sound lower bounds (rows,) of `C @ f(x)` over the box, f = affine layers with ReLU between."""
    pre_bounds: list[tuple[np.ndarray, np.ndarray]] = []
    for depth in range(1, len(layers)):
        size = layers[depth - 1][0].shape[0]
        identity = np.eye(size)
        lo = _backward(layers[:depth], pre_bounds, identity, lower, upper)
        hi = -_backward(layers[:depth], pre_bounds, -identity, lower, upper)
        pre_bounds.append((lo, hi))
    return _backward(layers, pre_bounds, np.asarray(C, np.float64), lower, upper)


def _backward(layers, pre_bounds, C, lower, upper) -> np.ndarray:
    W, b = layers[-1]
    A, const = C @ W, C @ b
    for (W, b), (lo, hi) in zip(reversed(layers[:-1]), reversed(pre_bounds[: len(layers) - 1])):
        active, unstable = lo >= 0, (lo < 0) & (hi > 0)
        width = np.where(unstable, hi - lo, 1.0)
        upper_slope = np.where(active, 1.0, np.where(unstable, hi / width, 0.0))
        upper_icpt = np.where(unstable, -upper_slope * lo, 0.0)
        lower_slope = np.where(active, 1.0, np.where(unstable & (hi >= -lo), 1.0, 0.0))
        A_pos, A_neg = np.maximum(A, 0.0), np.minimum(A, 0.0)
        const = const + A_neg @ upper_icpt
        A = A_pos * lower_slope + A_neg * upper_slope
        const, A = const + A @ b, A @ W
    return const + np.maximum(A, 0.0) @ lower + np.minimum(A, 0.0) @ upper


def margin_matrix(label: int, num_classes: int) -> np.ndarray:
    """Rows y[label] - y[j] for j != label, shape (num_classes - 1, num_classes)."""
    rows = [np.eye(num_classes)[label] - np.eye(num_classes)[j] for j in range(num_classes) if j != label]
    return np.stack(rows)


def pgd_attack(
    net: nn.Module, lower: np.ndarray, upper: np.ndarray, label: int, *, seed: int,
    restarts: int = 10, steps: int = 200,
) -> tuple[np.ndarray, float]:
    """Best point found in the box and its margin max_{j != label} y_j - y_label (> 0: misclassified)."""
    generator = torch.Generator().manual_seed(seed)
    lo = torch.from_numpy(np.asarray(lower, np.float32))
    hi = torch.from_numpy(np.asarray(upper, np.float32))
    best_x, best_margin = None, -np.inf
    for restart in range(restarts):
        start = torch.rand(lo.shape, generator=generator)
        x = ((lo + hi) / 2 if restart == 0 else lo + (hi - lo) * start).clone().requires_grad_(True)
        for step in range(steps):
            logits = net(x[None])[0]
            others = torch.cat([logits[:label], logits[label + 1 :]])
            margin = others.max() - logits[label]
            (grad,) = torch.autograd.grad(margin, x)
            size = (hi - lo).max() * 0.1 * (1.0 - step / steps) + 1e-4
            with torch.no_grad():
                x = torch.minimum(torch.maximum(x + size * grad.sign(), lo), hi).requires_grad_(True)
        with torch.no_grad():
            logits = net(x[None])[0]
            value = float(torch.cat([logits[:label], logits[label + 1 :]]).max() - logits[label])
        if value > best_margin:
            best_x, best_margin = x.detach().numpy().copy(), value
    return best_x, best_margin
