"""Where branch and bound computes: the torch device, batch sizes from free accelerator memory, and the
float32 arithmetic the rounding allowances assume.

Every tensor of a search follows the device of the network's weights (ReluMlp.from_pwl(..., device));
this module only resolves the name, sizes batches and guards precision. LPs (bab/leaf.py) stay on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import torch

from verikit.core.errors import UsageError
from verikit.engines.bab.common import BabSettings

MAX_GPU_BATCH = 16_384  # more domains per call than this gain nothing measurable and deepen the LIFO walk


def torch_device(name: str) -> torch.device:
    """The torch device for `name` ("cpu", "cuda", "cuda:N"); UsageError when it is not on this machine."""
    if name == "cpu":
        return torch.device("cpu")
    if not name.startswith("cuda"):
        raise UsageError(f"unknown device {name!r}; use 'cpu' or 'cuda'")
    if not torch.cuda.is_available():
        raise UsageError(f"device {name!r} requested but torch sees no CUDA device")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"device {name!r} requested but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def batch_from_memory(free_bytes: int, per_domain_bytes: int, fraction: float, floor: int,
                      ceiling: int = MAX_GPU_BATCH) -> int:
    """Domains per call that fit `fraction` of `free_bytes`, at least `floor` and at most `ceiling`."""
    fitting = int(fraction * free_bytes) // max(1, per_domain_bytes)
    return max(floor, min(ceiling, fitting))


def relu_domain_bytes(hidden_sizes: tuple[int, ...], n_inputs: int, rows: int, itemsize: int) -> int:
    """Bytes one split assignment needs while α/β-CROWN optimises it: α and β (R·Σn_i each) with their
    gradients and two Adam moments, the backward pass's saved coefficients (~6·R·Σn_i), the linear
    functions on the input (a few R·n_inputs) and the layer bounds and relaxations (~12·Σn_i)."""
    hidden = sum(hidden_sizes)
    return itemsize * (rows * (16 * hidden + 4 * n_inputs) + 12 * hidden)


def input_box_bytes(hidden_sizes: tuple[int, ...], n_inputs: int, rows: int, itemsize: int) -> int:
    """Bytes one input box needs: forward linear bounds ((n_inputs+1)·width, lower and upper, a few
    alive at once), CROWN's coefficients (~8·R·Σn_i) and the box itself."""
    widest, hidden = max(hidden_sizes, default=1), sum(hidden_sizes)
    return itemsize * (8 * (n_inputs + 1) * widest + 8 * rows * hidden + 16 * hidden + 4 * n_inputs)


def free_memory(device: torch.device) -> int:
    """Free bytes on a CUDA device (torch.cuda.mem_get_info)."""
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def sized_for(settings: BabSettings, device: torch.device, hidden_sizes: tuple[int, ...], n_inputs: int,
              rows: int, free_bytes: int | None = None) -> BabSettings:
    """`settings` with batch sizes chosen from free memory on a CUDA device (the configured sizes are the
    floor); unchanged on the CPU or when `gpu_memory_fraction` is 0."""
    if device.type != "cuda" or settings.gpu_memory_fraction <= 0:
        return settings
    free_bytes = free_memory(device) if free_bytes is None else free_bytes
    itemsize = torch.finfo(settings.dtype).bits // 8
    fraction = settings.gpu_memory_fraction
    relu = batch_from_memory(free_bytes, relu_domain_bytes(hidden_sizes, n_inputs, rows, itemsize), fraction,
                             settings.relu_batch_size)
    boxes = batch_from_memory(free_bytes, input_box_bytes(hidden_sizes, n_inputs, rows, itemsize), fraction,
                              settings.batch_size)
    return dataclasses.replace(settings, relu_batch_size=relu, batch_size=boxes)


@contextlib.contextmanager
def ieee_float32(device: torch.device) -> Iterator[None]:
    """On CUDA, TF32 off for the duration: the rounding allowances (crown/interval.py) assume float32
    products rounded to float32's 24-bit significand, which TF32 tensor-core matmuls (10 bits) do not
    give. Nothing changes on the CPU."""
    if device.type != "cuda":
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
        torch.set_float32_matmul_precision(precision)
