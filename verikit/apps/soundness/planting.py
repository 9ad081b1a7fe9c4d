"""Plant a hidden counterexample: a small sub-network that flips the label only very near x*.

For each planted instance, hidden units are appended to the two hidden dense layers:

- ReLU: layer 1 computes |x_p - x*_p| as relu(x_p - x*_p) + relu(x*_p - x_p) for every input p, layer 2 a
  pyramid `s = relu(1 - ||x - x*||_1 / rho)`. Outside the L1 ball of radius rho, s and its gradient are
  exactly zero, so gradient attacks get no signal and uniform sampling hits it with probability
  about (rho/eps)^n / n!.
- tanh / sigmoid: layer 1 computes, per input, a steep window that is ~1 when |x_p - x*_p| < delta and
  ~0 outside; layer 2 a steep AND of the n windows. Outside the cube of half-width delta (plus a few
  delta/8), the unit saturates and its gradient underflows.

The output layer adds `A * s` to the target class, with A calibrated so that at x* the target beats
every other class by `margin` (in float64; the float32 replay is checked by the caller). For CNNs, an
extra convolution channel carries each pixel through (`act(x + b)`, monotone), for layer 1 to read.
Finally the hidden units are shuffled, so the planted ones do not sit at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from verikit.apps.soundness.layers import Conv, Dense, LayeredNet, to_torch

class PlantingError(ValueError):
    """The trained network leaves no room to plant at x* (it already misclassifies it)."""


WINDOW_SHARPNESS = 8.0  # smooth window: slope of each edge, in units of 1/delta
AND_SHARPNESS = 40.0  # smooth AND over the n windows
DECOY_WEIGHT = 0.05  # output weight of a decoy spike (robust boxes are trained with margin 1)


@dataclass(frozen=True, eq=False)
class Plant:
    """Make `point` (n,) — exactly representable in float32 — classify as `target` instead of `label`.

    A `decoy` gets the same units but only a weak pull (DECOY_WEIGHT) towards `target`: it flips
    nothing, and keeps every network as wide as if all its instances were planted.
    """

    point: np.ndarray
    label: int
    target: int
    decoy: bool = False


def planted_point(centre: np.ndarray, eps: float, rng: np.random.Generator,
                  inner: float = 0.5, outer: float = 0.9) -> np.ndarray:
    """A float32-exact point with every coordinate between inner*eps and outer*eps from the centre."""
    offset = rng.uniform(inner, outer, size=centre.shape) * rng.choice([-1.0, 1.0], size=centre.shape)
    return (np.asarray(centre, dtype=np.float64) + eps * offset).astype(np.float32).astype(np.float64)


def _act(name: str, z: np.ndarray) -> np.ndarray:
    return {"relu": lambda v: np.maximum(v, 0.0), "tanh": np.tanh,
            "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v))}[name](z)


def _act_slope(name: str, z: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if name == "sigmoid":
        s = _act(name, z)
        return s * (1.0 - s)
    return np.ones_like(z)


@dataclass(frozen=True)
class _Reader:
    """How layer 1 sees input p: column `columns[p]` holds act(x_p + shift), or x_p + shift if act is None."""

    columns: np.ndarray
    activation: str | None
    shift: float

    def value(self, x: np.ndarray) -> np.ndarray:
        return x + self.shift if self.activation is None else _act(self.activation, x + self.shift)

    def slope(self, x: np.ndarray) -> np.ndarray:
        return np.ones_like(x) if self.activation is None else _act_slope(self.activation, x + self.shift)


def _with_reader(net: LayeredNet, input_lower: float) -> tuple[LayeredNet, _Reader]:
    """For a CNN, add the pass-through conv channel; returns the widened net and how to read inputs."""
    n = net.n_inputs
    if net.conv is None:
        return net, _Reader(np.arange(n), None, 0.0)
    channels = net.conv.weight.shape[0]
    kernel = np.zeros((1, 1, 3, 3))
    kernel[0, 0, 1, 1] = 1.0
    relu = net.activation == "relu"
    shift = max(0.0, -input_lower) + 0.5 if relu else 0.0  # relu(x + shift) = x + shift on every box
    conv = Conv(np.concatenate([net.conv.weight, kernel]), np.append(net.conv.bias, shift))
    first = net.dense[0]
    weight = np.concatenate([first.weight, np.zeros((first.weight.shape[0], n))], axis=1)
    dense = (Dense(weight, first.bias.copy()), *net.dense[1:])
    reader = _Reader(channels * n + np.arange(n), None if relu else net.activation, shift)
    return LayeredNet(net.input_shape, net.activation, dense, conv), reader


def _spike_units(activation: str, reader: _Reader, point: np.ndarray, radius: float, n_columns: int):
    """Layer-1 rows (2n, columns), biases (2n,), layer-2 row (2n,) and bias of one spike."""
    n = point.size
    rows = np.zeros((2 * n, n_columns))
    if activation == "relu":
        centre = reader.value(point)
        rows[np.arange(n), reader.columns] = 1.0
        rows[n + np.arange(n), reader.columns] = -1.0
        return rows, np.concatenate([-centre, centre]), np.full(2 * n, -1.0 / radius), 1.0
    low, high = reader.value(point - radius), reader.value(point + radius)
    gain = WINDOW_SHARPNESS / (radius * reader.slope(point))
    rows[np.arange(n), reader.columns] = gain
    rows[n + np.arange(n), reader.columns] = gain
    per_window = 0.5 if activation == "tanh" else 1.0  # window = (a - b)/2 for tanh, a - b for sigmoid
    second = np.concatenate([np.full(n, per_window), np.full(n, -per_window)]) * AND_SHARPNESS
    return rows, np.concatenate([-gain * low, -gain * high]), second, -AND_SHARPNESS * (n - 0.5)


def _append(net: LayeredNet, rows1, bias1, row2, bias2) -> LayeredNet:
    """Add the spike's units: rows to layer 1, one unit to layer 2 reading only them, a zero output column."""
    first, second, out = net.dense
    w1 = np.concatenate([first.weight, rows1])
    b1 = np.concatenate([first.bias, bias1])
    w2 = np.concatenate([second.weight, np.zeros((second.weight.shape[0], rows1.shape[0]))], axis=1)
    new_row = np.concatenate([np.zeros(first.weight.shape[0]), row2])
    w2 = np.concatenate([w2, new_row[None, :]])
    b2 = np.append(second.bias, bias2)
    w3 = np.concatenate([out.weight, np.zeros((out.weight.shape[0], 1))], axis=1)
    return LayeredNet(net.input_shape, net.activation,
                      (Dense(w1, b1), Dense(w2, b2), Dense(w3, out.bias.copy())), net.conv)


def _evaluate(net: LayeredNet, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 logits (K,) and layer-2 activations (h2,) at one point x (n,)."""
    module = to_torch(net, torch.float64)
    with torch.no_grad():
        tensor = torch.as_tensor(x, dtype=torch.float64)[None, :]
        if module.conv is not None:
            tensor = module.act(module.conv(tensor.reshape(-1, *net.input_shape))).flatten(1)
        hidden = module.act(module.dense[1](module.act(module.dense[0](tensor))))
        return module.dense[2](hidden)[0].numpy(), hidden[0].numpy()


def plant(net: LayeredNet, plants: list[Plant], *, radius: float, margin: float, input_lower: float,
          rng: np.random.Generator) -> LayeredNet:
    """`net` with one spike per plant (see module doc); PlantingError if x* is already misclassified.

    `radius` is the L1 radius (ReLU) or the window half-width (tanh/sigmoid), in input units;
    `input_lower` the lowest input value of any box (the CNN pass-through channel must stay linear).
    """
    net, reader = _with_reader(net, input_lower)
    for plant_ in plants:
        rows1, bias1, row2, bias2 = _spike_units(net.activation, reader, plant_.point, radius,
                                                 net.dense[0].weight.shape[1])
        net = _append(net, rows1, bias1, row2, bias2)
        logits, hidden = _evaluate(net, plant_.point)
        on = (hidden[-1] + 1.0) / 2.0 if net.activation == "tanh" else hidden[-1]
        others = np.delete(logits, plant_.target)
        needed = DECOY_WEIGHT * on if plant_.decoy else float(others.max() - logits[plant_.target] + margin)
        if needed <= 0 or on < 0.5:
            raise PlantingError(f"cannot plant at x* (needed {needed:.3g}, spike {on:.3g})")
        out = net.dense[2]
        out.weight[plant_.target, -1] = needed / on if net.activation != "tanh" else needed / (2 * on)
        if net.activation == "tanh":  # A * (s + 1) / 2: the constant half goes to the bias
            out.bias[plant_.target] += needed / (2 * on)
    return _shuffle_hidden(net, rng)


def _shuffle_hidden(net: LayeredNet, rng: np.random.Generator) -> LayeredNet:
    first, second, out = net.dense
    p1 = rng.permutation(first.weight.shape[0])
    p2 = rng.permutation(second.weight.shape[0])
    return LayeredNet(net.input_shape, net.activation, (
        Dense(first.weight[p1], first.bias[p1]),
        Dense(second.weight[p2][:, p1], second.bias[p2]),
        Dense(out.weight[:, p2], out.bias.copy()),
    ), net.conv)
