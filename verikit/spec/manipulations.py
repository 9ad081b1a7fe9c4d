"""Image manipulations (DLV-style semantic perturbations), each a family of images named by parameters.

Every manipulation acts on the raw image (shape (C, H, W), values in the valid range [lo, hi]) and hands
the model `(raw - mean) / std`, flat (n_inputs,). Two shapes of family:

- continuous (a `Transform`, core/property.py, theta in a box): `PixelAffine` (brightness `x + b`,
  contrast `c (x - m) + m`, or both, clipped to [lo, hi]) has an exact ONNX prefix — an
  affine-ReLU-affine chain, the clip written `lo + relu(z - lo) - relu(z - hi)` — so engines decide it
  over theta; `Rotation` (bilinear, optionally scaled) has none, only a sound per-pixel enclosure over a
  theta box (`enclose`), so engines prove over that box and the spec splits theta into small intervals;
- finite (`members`: one image, or one box when a fill is a range, per member): occlusion patches,
  integer translations, scratches. Each member becomes an ordinary box case.

`apply` (numpy, float64) is the reference a counterexample is recomputed with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from verikit.core.property import Box


@dataclass(frozen=True, eq=False)
class Image:
    """The raw image (C, H, W) in [lo, hi] and the normalisation the model expects (arrays broadcast to it)."""

    raw: np.ndarray
    lo: float
    hi: float
    mean: np.ndarray = field(default_factory=lambda: np.zeros(1))
    std: np.ndarray = field(default_factory=lambda: np.ones(1))
    shape: tuple = ()  # the model's input shape, for reshaping back (flat order is C order)

    @property
    def flat_mean(self) -> np.ndarray:
        return np.broadcast_to(self.mean, self.raw.shape).reshape(-1)

    @property
    def flat_std(self) -> np.ndarray:
        return np.broadcast_to(self.std, self.raw.shape).reshape(-1)

    def to_model(self, raw: np.ndarray) -> np.ndarray:
        """Raw values (any shape with raw's size) -> the model's flat float64 input."""
        return (np.asarray(raw, dtype=np.float64).reshape(-1) - self.flat_mean) / self.flat_std

    def box(self, lower: np.ndarray, upper: np.ndarray) -> Box:
        """Raw per-pixel bounds -> a Box over the model's input (normalising is increasing: std > 0)."""
        return Box(self.to_model(lower), self.to_model(upper))


def _clip(values: np.ndarray, image: Image) -> np.ndarray:
    return np.clip(values, image.lo, image.hi)


# --- continuous: brightness and contrast -------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class PixelAffine:
    """`clip(c (x - m) + m + b)`: theta = [b] (brightness), [c] (contrast) or [b, c] (both). `centre` is m."""

    image: Image
    brightness: bool = True
    contrast: bool = False
    centre: float = 0.0

    @property
    def name(self) -> str:
        return "+".join(k for k, on in (("brightness", self.brightness), ("contrast", self.contrast)) if on)

    @property
    def n_params(self) -> int:
        return int(self.brightness) + int(self.contrast)

    def _linear(self) -> tuple[np.ndarray, np.ndarray]:
        """(A (n_params, n), base (n,)) with the unclipped raw image `theta @ A + base`."""
        x = self.image.raw.reshape(-1)
        rows, base = [], x.copy()
        if self.brightness:
            rows.append(np.ones_like(x))
        if self.contrast:
            rows.append(x - self.centre)
            base = np.full_like(x, self.centre)
        return np.stack(rows), base

    def apply(self, theta: np.ndarray) -> np.ndarray:
        A, base = self._linear()
        return self.image.to_model(_clip(np.asarray(theta, dtype=np.float64).reshape(-1) @ A + base, self.image))

    def enclose(self, params: Box) -> Box:
        """Interval arithmetic over theta @ A + base (each entry linear in theta), then clip and normalise."""
        A, base = self._linear()
        low = base + np.minimum(A * params.lower[:, None], A * params.upper[:, None]).sum(axis=0)
        high = base + np.maximum(A * params.lower[:, None], A * params.upper[:, None]).sum(axis=0)
        return self.image.box(_clip(low, self.image), _clip(high, self.image))

    def onnx_prefix(self):
        """theta (1, p) -> MatMul/Add -> Relu -> MatMul/Add -> image (1, n): the clip and normalisation exact."""
        from onnx import TensorProto, helper, numpy_helper

        A, base = self._linear()
        n = base.size
        lo, hi = self.image.lo, self.image.hi
        std, mean = self.image.flat_std, self.image.flat_mean
        spread = np.concatenate([A, A], axis=1)                           # z twice: (p, 2n)
        shift = np.concatenate([base - lo, base - hi])                    # relu(z - lo), relu(z - hi)
        join = np.concatenate([np.diag(1.0 / std), -np.diag(1.0 / std)])  # (r1 - r2) / std: (2n, n)
        offset = (lo - mean) / std
        tensors = {"spread": spread, "shift": shift[None, :], "join": join, "offset": offset[None, :]}
        initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in tensors.items()]
        nodes = [helper.make_node("MatMul", ["theta", "spread"], ["z"]),
                 helper.make_node("Add", ["z", "shift"], ["zs"]),
                 helper.make_node("Relu", ["zs"], ["r"]),
                 helper.make_node("MatMul", ["r", "join"], ["rj"]),
                 helper.make_node("Add", ["rj", "offset"], ["image"])]
        graph = helper.make_graph(nodes, self.name,
                                  [helper.make_tensor_value_info("theta", TensorProto.FLOAT, [1, self.n_params])],
                                  [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, n])],
                                  initializer=initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)

    def describe(self) -> dict:
        params = (["b"] if self.brightness else []) + (["c"] if self.contrast else [])
        return {"name": self.name, "params": params, "centre": self.centre, "clip": [self.image.lo, self.image.hi]}


# --- continuous: rotation (and scaling) with bilinear interpolation ----------------------------------

def _interval_cos(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Range of cos over [low, high] (radians, elementwise): the endpoints and any k*pi inside."""
    ends = np.stack([np.cos(low), np.cos(high)])
    least, most = ends.min(axis=0), ends.max(axis=0)
    has_max = np.floor(high / (2 * np.pi)) >= np.ceil(low / (2 * np.pi))               # 2k pi inside
    has_min = np.floor((high - np.pi) / (2 * np.pi)) >= np.ceil((low - np.pi) / (2 * np.pi))
    return np.where(has_min, -1.0, least), np.where(has_max, 1.0, most)


def _interval_sin(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _interval_cos(low - np.pi / 2, high - np.pi / 2)


def _times_positive(low: np.ndarray, high: np.ndarray, k_low: float, k_high: float):
    """[low, high] * [k_low, k_high] with 0 <= k_low <= k_high."""
    products = np.stack([low * k_low, low * k_high, high * k_low, high * k_high])
    return products.min(axis=0), products.max(axis=0)


@dataclass(frozen=True, eq=False)
class Rotation:
    """Rotate the image by theta[0] degrees (counter-clockwise, about its centre), scaled by theta[1] when
    `scaling`; bilinear interpolation, `fill` outside the image. No exact prefix (cos/sin are not
    piecewise linear): engines prove over `enclose`, which bounds each output pixel by the min and max of
    the pixels (and fill) around every source point reachable — sound, as a bilinear value is a convex
    combination of its four neighbours."""

    image: Image
    fill: float = 0.0
    scaling: bool = False

    name = "rotation"
    SLACK = 1e-9  # source coordinates widened by this much (per pixel of radius) against rounding in cos/sin
    VALUE_SLACK = 1e-12  # enclosure widened by this much against rounding in the interpolation

    @property
    def n_params(self) -> int:
        return 2 if self.scaling else 1

    def _offsets(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        _, height, width = self.image.raw.shape
        cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
        rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                                 indexing="ij")
        return cols - cx, rows - cy, cx, cy

    def source(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source coordinates (x, y), each (H, W), sampled for output pixel (row, col)."""
        theta = np.asarray(theta, dtype=np.float64).reshape(-1)
        angle = -math.radians(theta[0])  # rows grow downwards: counter-clockwise on screen is -angle here
        scale = theta[1] if self.scaling else 1.0
        u, v, cx, cy = self._offsets()
        return (cx + (math.cos(angle) * u + math.sin(angle) * v) / scale,
                cy + (-math.sin(angle) * u + math.cos(angle) * v) / scale)

    def apply(self, theta: np.ndarray) -> np.ndarray:
        xs, ys = self.source(theta)
        return self.image.to_model(_bilinear(self.image.raw, xs[..., None], ys[..., None], self.fill)[..., 0])

    def source_ranges(self, params: Box) -> tuple[np.ndarray, ...]:
        """Per output pixel (H, W), a rectangle [x_lo, x_hi] x [y_lo, y_hi] of source coordinates holding
        every source point of that pixel for theta in `params` (widened by SLACK)."""
        u, v, cx, cy = self._offsets()
        radius = np.hypot(u, v)
        phi = np.arctan2(v, u)
        low, high = -math.radians(params.upper[0]), -math.radians(params.lower[0])  # as in `source`
        k_low, k_high = 1.0, 1.0
        if self.scaling:
            if params.lower[1] <= 0:
                raise ValueError("the scale must stay > 0")
            k_low, k_high = 1.0 / params.upper[1], 1.0 / params.lower[1]
        cos_lo, cos_hi = _interval_cos(low - phi, high - phi)  # u cos t + v sin t = r cos(t - phi)
        sin_lo, sin_hi = _interval_sin(low - phi, high - phi)  # -u sin t + v cos t = -r sin(t - phi)
        x_lo, x_hi = _times_positive(radius * cos_lo, radius * cos_hi, k_low, k_high)
        y_lo, y_hi = _times_positive(-radius * sin_hi, -radius * sin_lo, k_low, k_high)
        slack = self.SLACK * (1.0 + radius)
        return cx + x_lo - slack, cx + x_hi + slack, cy + y_lo - slack, cy + y_hi + slack

    def enclose(self, params: Box) -> Box:
        """The exact range of the bilinear interpolant over each pixel's source rectangle: inside one grid
        cell the interpolant is linear along each axis, so its extremes lie at the corners of the
        rectangle's pieces, i.e. on {x_lo, x_hi, integers between} x {y_lo, y_hi, integers between}."""
        x_lo, x_hi, y_lo, y_hi = self.source_ranges(params)
        xs, ys = _grid_points(x_lo, x_hi), _grid_points(y_lo, y_hi)  # (H, W, kx), (H, W, ky)
        kx, ky = xs.shape[-1], ys.shape[-1]
        px = np.repeat(xs, ky, axis=-1)
        py = np.tile(ys, (1, 1, kx))
        values = _bilinear(self.image.raw, px, py, self.fill)  # (C, H, W, kx * ky)
        slack = self.VALUE_SLACK * (1.0 + np.abs(values).max())
        return self.image.box(values.min(axis=-1) - slack, values.max(axis=-1) + slack)

    def onnx_prefix(self):
        return None

    def describe(self) -> dict:
        return {"name": self.name, "params": ["degrees"] + (["scale"] if self.scaling else []),
                "interpolation": "bilinear", "fill": self.fill}


def _bilinear(raw: np.ndarray, xs: np.ndarray, ys: np.ndarray, fill: float) -> np.ndarray:
    """Bilinear samples of raw (C, H, W) at source points xs, ys (same shape S): (C, *S); `fill` outside."""
    _, height, width = raw.shape
    x0, y0 = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    fx, fy = xs - x0, ys - y0
    out = np.zeros((raw.shape[0],) + xs.shape)
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                           (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        r, c = y0 + dy, x0 + dx
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        values = np.where(inside[None], raw[:, np.clip(r, 0, height - 1), np.clip(c, 0, width - 1)], fill)
        out += weight[None] * values
    return out


def _grid_points(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per entry of low/high (shape S), the points low, high and every integer strictly between, padded
    with `high` to one length K: (*S, K)."""
    first = np.floor(low) + 1
    count = np.maximum(0, np.ceil(high) - first).astype(np.int64)  # integers in (low, high)
    most = int(count.max(initial=0))
    steps = np.arange(most, dtype=np.float64)
    inner = np.where(steps < count[..., None], first[..., None] + steps, high[..., None])
    return np.concatenate([low[..., None], high[..., None], inner], axis=-1)


# --- finite families ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """One member of a finite family: raw per-pixel bounds (equal where the member is one image)."""

    lower: np.ndarray  # raw (C, H, W)
    upper: np.ndarray
    described: dict


def _fill_bounds(fill) -> tuple[float, float]:
    return (float(fill[0]), float(fill[1])) if isinstance(fill, (list, tuple)) else (float(fill), float(fill))


def occlusion_members(image: Image, size: int, fill=0.0, stride: int = 1) -> list[Member]:
    """A size x size patch at every position (top-left corner every `stride` pixels), filled with one
    value, or with any values in [fill[0], fill[1]]."""
    raw = image.raw
    _, height, width = raw.shape
    low, high = _fill_bounds(fill)
    members = []
    for row in list(range(0, height - size + 1, stride)):
        for col in list(range(0, width - size + 1, stride)):
            lower, upper = raw.copy(), raw.copy()
            lower[:, row:row + size, col:col + size] = low
            upper[:, row:row + size, col:col + size] = high
            members.append(Member(lower, upper, {"manipulation": "occlusion", "size": size, "row": row, "col": col}))
    return members


def translate(raw: np.ndarray, dy: int, dx: int, fill: float) -> np.ndarray:
    """The image moved dy rows down and dx columns right, `fill` where nothing moved in."""
    _, height, width = raw.shape
    out = np.full_like(raw, fill)
    src_rows = slice(max(0, -dy), min(height, height - dy))
    src_cols = slice(max(0, -dx), min(width, width - dx))
    dst_rows = slice(max(0, dy), min(height, height + dy))
    dst_cols = slice(max(0, dx), min(width, width + dx))
    out[:, dst_rows, dst_cols] = raw[:, src_rows, src_cols]
    return out


def translation_members(image: Image, shift: int, fill: float = 0.0) -> list[Member]:
    """Every integer shift (dy, dx) with |dy|, |dx| <= shift, except (0, 0)."""
    members = []
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            if dy or dx:
                moved = translate(image.raw, dy, dx, fill)
                members.append(Member(moved, moved, {"manipulation": "translation", "dy": dy, "dx": dx}))
    return members


def scratch_mask(height: int, width: int, row: float, col: float, degrees: float, length: float,
                 thickness: float) -> np.ndarray:
    """Pixels whose centre lies within thickness/2 of the segment from (row, col), `length` pixels long at
    `degrees` (0: rightwards, 90: upwards)."""
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    angle = math.radians(degrees)
    dr, dc = -math.sin(angle), math.cos(angle)
    along = np.clip((rows - row) * dr + (cols - col) * dc, 0.0, length)
    distance = np.hypot(rows - (row + along * dr), cols - (col + along * dc))
    return distance <= thickness / 2.0 + 1e-12


def scratch_members(image: Image, length: float, thickness: float = 1.0, value: float = 1.0,
                    angles=(0, 45, 90, 135), stride: int = 4) -> list[Member]:
    """DLV-style scratches: a segment of `length` at each angle from every start on a `stride` grid, its
    pixels set to `value` (one member each; starts whose segment leaves the image are skipped)."""
    raw = image.raw
    _, height, width = raw.shape
    members = []
    for degrees in angles:
        angle = math.radians(degrees)
        for row in range(0, height, stride):
            for col in range(0, width, stride):
                end_r, end_c = row - length * math.sin(angle), col + length * math.cos(angle)
                if not (0 <= end_r <= height - 1 and 0 <= end_c <= width - 1):
                    continue
                mask = scratch_mask(height, width, row, col, degrees, length, thickness)
                scratched = raw.copy()
                scratched[:, mask] = value
                members.append(Member(scratched, scratched, {"manipulation": "scratch", "row": row, "col": col,
                                                             "degrees": degrees, "length": length}))
    return members
