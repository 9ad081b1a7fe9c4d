"""Small inline-SVG charts for the HTML reports: line/step plots and grey-scale images (no dependencies)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

import numpy as np

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@dataclass(frozen=True)
class Series:
    """One line: points (x, y) in data units; `step` draws a staircase (a cactus plot), `dash` a dashed line."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    step: bool = False
    dash: bool = False
    markers: bool = False


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _log_ticks(low: float, high: float) -> list[float]:
    return [10.0**e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
            if low <= 10.0**e <= high]


def line_chart(series: Sequence[Series], *, x_label: str, y_label: str, log_x: bool = False,
               y_range: tuple[float, float] | None = None, width: int = 640, height: int = 360,
               title: str = "") -> str:
    """An SVG line chart with axes, ticks and a legend."""
    left, right, top, bottom = 60, 20, 30 if title else 12, 46
    xs = [x for s in series for x in s.x if not log_x or x > 0]
    ys = [y for s in series for y in s.y]
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if log_x:
        x_low, x_high = 10 ** math.floor(math.log10(x_low)), 10 ** math.ceil(math.log10(x_high))
    if x_high <= x_low:
        x_high = x_low + 1.0
    y_low, y_high = y_range if y_range else (min(ys + [0.0]), max(ys + [1.0]))
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        if log_x:
            return left + plot_w * (math.log10(max(x, x_low)) - math.log10(x_low)) / (math.log10(x_high) -
                                                                                      math.log10(x_low))
        return left + plot_w * (x - x_low) / (x_high - x_low)

    def py(y: float) -> float:
        return top + plot_h * (1 - (y - y_low) / ((y_high - y_low) or 1.0))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" class="chart">']
    if title:
        parts.append(f'<text x="{width / 2}" y="18" text-anchor="middle" class="title">{escape(title)}</text>')
    for tick in (_log_ticks(x_low, x_high) if log_x else _ticks(x_low, x_high)):
        parts.append(f'<line x1="{px(tick):.1f}" x2="{px(tick):.1f}" y1="{top}" y2="{top + plot_h}" class="grid"/>'
                     f'<text x="{px(tick):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{tick:g}</text>')
    for tick in _ticks(y_low, y_high):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
                 f'{escape(y_label)}</text>')
    for index, line in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        points = [(px(x), py(y)) for x, y in zip(line.x, line.y) if not log_x or x > 0]
        if line.step and points:
            stepped = [points[0]]
            for (x0, y0), (x1, y1) in zip(points, points[1:]):
                stepped += [(x1, y0), (x1, y1)]
            points = stepped
        dash = ' stroke-dasharray="6 4"' if line.dash else ""
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        if line.markers:
            parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in points)
        legend_y = top + 14 + 16 * index
        parts.append(f'<line x1="{left + 10}" x2="{left + 30}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
                     f'stroke="{color}" stroke-width="2"{dash}/><text x="{left + 36}" y="{legend_y}">'
                     f'{escape(line.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def image(pixels: np.ndarray, *, scale: int = 8, label: str = "",
          value_range: tuple[float, float] | None = None) -> str:
    """A grey-scale (H, W) or RGB (3, H, W) image as SVG rectangles, values mapped from `value_range`
    (default: the image's own range; give two images one range to compare them pixel by pixel)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    rgb = pixels.ndim == 3 and pixels.shape[0] == 3
    low, high = value_range if value_range is not None else (float(pixels.min()), float(pixels.max()))
    norm = np.clip((pixels - low) / ((high - low) or 1.0), 0.0, 1.0)
    height, width = norm.shape[-2:]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width * scale}" '
             f'height="{height * scale}" shape-rendering="crispEdges" class="digit">'
             f'<title>{escape(label)}</title>']
    for row in range(height):
        for col in range(width):
            if rgb:
                r, g, b = (int(255 * norm[c, row, col]) for c in range(3))
            else:
                r = g = b = int(255 * (1 - norm[row, col]))  # ink is dark on white
            parts.append(f'<rect x="{col}" y="{row}" width="1" height="1" fill="#{r:02x}{g:02x}{b:02x}"/>')
    parts.append("</svg>")
    return "".join(parts)
