"""The complete engines agree with an exact brute force on 200 random specs of small ReLU networks.

The reference enumerates every linear region of the network inside the box (depth-first over ReLU
phases, each partial pattern kept only if a linear program finds it feasible) and, per region, solves
one LP: the largest t with `C y + t <= d` for every row of a disjunct. Its maximum t* over the regions
says whether the disjunct can hold (t* >= 0). Each spec's right-hand sides are then shifted so that
every disjunct's t* is a chosen margin at least MIN_MARGIN away from 0, which keeps the float LP and
the float32 replay clear of ties. SMT (z3) and branch and bound (input splitting, and ReLU splitting
with β split multipliers) must return exactly the reference's verdict, and every counterexample must replay through onnxruntime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest

from onnx_factory import mlp
from verikit.engines.bab import engine as bab
from verikit.engines.smt import engine as smt
from verikit.core.pwl import Affine, PiecewiseLinear
from verikit.onnx.load import load_network_bytes
from verikit.core.network import Network
from verikit.onnx.pwl import to_piecewise_linear
from verikit.core.result import Budget, Falsified, Proven
from verikit.core.property import Box, Case, Conjunction

linprog = pytest.importorskip("scipy.optimize").linprog

NETWORKS = 25
SPECS_PER_NETWORK = 8
MIN_MARGIN = 0.01
ENGINE_BUDGET_S = 60.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass(frozen=True)
class Region:
    """One linear region inside the box: sign constraints G x <= h, outputs y = M x + m."""

    G: np.ndarray
    h: np.ndarray
    M: np.ndarray
    m: np.ndarray


def _feasible(G: np.ndarray, h: np.ndarray, box: Box) -> bool:
    n = box.size
    if G.shape[0] == 0:
        return True
    result = linprog(np.zeros(n), A_ub=G, b_ub=h, bounds=list(zip(box.lower, box.upper)), method="highs")
    return result.status == 0


def linear_regions(pwl: PiecewiseLinear, box: Box) -> list[Region]:
    """Every activation pattern realised in the box, with its region and its affine output map."""
    affines = [layer for layer in pwl.layers if isinstance(layer, Affine)]
    lower, upper = box.lower, box.upper
    regions: list[Region] = []

    def descend(layer: int, neuron: int, P, q, G, h, A, c, signs):
        # P x + q: the previous layer's activations; A x + c: this layer's pre-activations
        if layer == len(affines) - 1:
            regions.append(Region(G, h, affines[-1].weight @ P, affines[-1].weight @ q + affines[-1].bias))
            return
        if neuron == A.shape[0]:
            on = np.array(signs, float)[:, None]
            P_next, q_next = A * on, c * on[:, 0]
            nxt = affines[layer + 1]
            descend(layer + 1, 0, P_next, q_next, G, h, nxt.weight @ P_next, nxt.weight @ q_next + nxt.bias, [])
            return
        row, const = A[neuron], c[neuron]
        low = const + np.minimum(row * lower, row * upper).sum()
        high = const + np.maximum(row * lower, row * upper).sum()
        for active in (True, False):
            if (active and high < 0) or (not active and low > 0):
                continue
            sign = -1.0 if active else 1.0  # active: -(a x + c) <= 0; inactive: a x + c <= 0
            G_next, h_next = np.vstack([G, sign * row]), np.append(h, -sign * const)
            stable = low >= 0 if active else high <= 0
            if stable or _feasible(G_next, h_next, box):
                descend(layer, neuron + 1, P, q, G_next, h_next, A, c, signs + [active])

    n = pwl.n_inputs
    first = affines[0]
    descend(0, 0, np.eye(n), np.zeros(n), np.zeros((0, n)), np.zeros(0), first.weight, first.bias, [])
    return regions


def best_slack(regions: list[Region], box: Box, conjunction: Conjunction) -> float:
    """max over x in the box of min_r (d_r - C_r f(x)), exactly (up to LP tolerance) by regions."""
    n = box.size
    best = -np.inf
    for region in regions:
        # variables (x, t): maximise t s.t. G x <= h and C (M x + m) + t <= d
        A_ub = np.vstack([np.hstack([region.G, np.zeros((region.G.shape[0], 1))]),
                          np.hstack([conjunction.C @ region.M, np.ones((conjunction.rows, 1))])])
        b_ub = np.concatenate([region.h, conjunction.d - conjunction.C @ region.m])
        bounds = list(zip(box.lower, box.upper)) + [(None, 1e3)]
        result = linprog(np.r_[np.zeros(n), -1.0], A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
        if result.status == 0:
            best = max(best, -result.fun)
    return best


def random_network(rng: np.random.Generator, index: int) -> tuple[Network, PiecewiseLinear]:
    n_inputs = int(rng.integers(2, 5))
    depth = int(rng.integers(1, 4))
    widths = [int(rng.integers(3, 7)) for _ in range(depth)]
    sizes = (n_inputs, *widths, int(rng.integers(2, 4)))
    network = load_network_bytes(mlp(sizes, seed=1000 + index), f"random-{index}")
    return network, to_piecewise_linear(network)


def random_case(rng: np.random.Generator, pwl: PiecewiseLinear, box: Box, regions: list[Region]) -> tuple[Case, bool]:
    """A case whose disjuncts have exact margins chosen away from 0; and whether it is violated."""
    outputs = pwl.evaluate(box.sample(256, rng))
    spread = float(np.ptp(outputs)) + 1e-3
    disjuncts, violated = [], False
    for _ in range(int(rng.integers(1, 3))):
        rows = int(rng.integers(1, 3))
        C = rng.normal(size=(rows, pwl.n_outputs))
        d = np.quantile(outputs @ C.T, rng.uniform(0.2, 1.0), axis=0)
        margin = float(rng.choice([-1.0, 1.0]) * max(MIN_MARGIN, rng.uniform(0.0, 0.2) * spread))
        d = d + (margin - best_slack(regions, box, Conjunction(C, d)))
        disjuncts.append(Conjunction(C, d))
        violated |= margin > 0
    return Case(box, tuple(disjuncts)), violated


def test_smt_bab_and_brute_force_agree_on_200_random_specs():
    rng = np.random.default_rng(20240607)
    started = time.monotonic()
    counts = {"sat": 0, "unsat": 0}
    split_proofs = 0  # ReLU-split proofs that needed more than the root (so β bounds decided them)
    for index in range(NETWORKS):
        network, pwl = random_network(rng, index)
        centre = rng.uniform(-1.0, 1.0, pwl.n_inputs)
        radius = rng.uniform(0.05, 0.4, pwl.n_inputs)
        box = Box(centre - radius, centre + radius)
        regions = linear_regions(pwl, box)
        for _ in range(SPECS_PER_NETWORK):
            case, violated = random_case(rng, pwl, box, regions)
            counts["sat" if violated else "unsat"] += 1
            where = f"network {index} ({pwl.n_inputs} inputs, {len(regions)} regions), expected " \
                    f"{'sat' if violated else 'unsat'}"
            samples = box.sample(512, rng)
            if any(case.satisfied_disjunct(y) is not None for y in pwl.evaluate(samples)):
                assert violated, f"{where}: a sample violates the case the reference calls safe"
            for name, outcome in (
                ("smt", smt.run(pwl, network, case, Budget.seconds(ENGINE_BUDGET_S), seed=index)),
                ("bab", bab.run(pwl, network, case, Budget.seconds(ENGINE_BUDGET_S), seed=index)),
                # ReLU splitting: split constraints enter the bound through β (warm-started from the
                # parent), with look-ahead branching, refined intermediate bounds on every other network,
                # and root hidden bounds tightened by branching (bab/tighten.py) on half of them
                ("bab-relu", bab.run(pwl, network, case, Budget.seconds(ENGINE_BUDGET_S), seed=index,
                                     branching="relu", relu_refine=index % 2 == 1,
                                     relu_tighten_leaves=32 if index % 4 < 2 else 0)),
            ):
                if violated:
                    assert isinstance(outcome, Falsified), f"{name} on {where}: {outcome}"
                    found = outcome.counterexample
                    assert box.contains(found.x)
                    assert case.disjuncts[found.disjunct].holds(network.replay(found.x[None, :])[0])
                else:
                    assert isinstance(outcome, Proven), f"{name} on {where}: {outcome}"
                    split_proofs += name == "bab-relu" and outcome.certificate.detail.get("domains", 1) > 1
    assert counts["sat"] >= 40 and counts["unsat"] >= 40, counts
    assert sum(counts.values()) == 200
    print(f"200 specs ({counts}, {split_proofs} ReLU-split proofs past the root) in "
          f"{time.monotonic() - started:.1f} s")
    assert split_proofs >= 10, split_proofs
