"""Manipulated cases decided over their parameters: the case lifted onto the model composed with the
transform's ONNX prefix, and its outcome lowered back onto the original model.

A case whose region is `Manipulated` with an exact prefix becomes a box over theta (and delta, when the
region has an eps) on `compose_prefix(network, prefix)`: every engine then decides "for every theta" as it
decides any box, and few parameters (1-3) suit input-splitting branch and bound. A proof there is a proof
of the original case in real arithmetic (the prefix equals `transform.apply` on reals). A counterexample
there names theta: the image is recomputed from it in numpy and replayed on the original ONNX bytes
(`witness.replay.validate`), the only way to a Falsified. Cases without a prefix stay as they are: engines
prove over the enclosing box, and only a counterexample that comes with theta can be shown a member.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from verikit.core.property import Box, Case, Manipulated
from verikit.core.result import Falsified, Outcome, Proven, Unknown
from verikit.engines.problem import Problem
from verikit.witness.replay import validate


@dataclass(eq=False)
class Lifted:
    """A case over (theta, delta) on the composed network, and how to take its outcomes back."""

    problem: Problem
    case: Case
    original: Case

    @property
    def region(self) -> Manipulated:
        return self.original.region  # type: ignore[return-value]

    def image_of(self, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image (n_inputs,), theta (n_params,)) for a point of the lifted box, recomputed in numpy."""
        point = np.asarray(point, dtype=np.float64).reshape(-1)
        n_params = self.region.transform.n_params
        theta = point[:n_params]
        image = self.region.image(theta)
        if self.region.eps > 0:
            image = np.clip(image + point[n_params:], self.original.box.lower, self.original.box.upper)
        return image, theta

    def lower(self, network, outcome: Outcome, tolerances) -> Outcome:
        """The outcome on the original model: a proof keeps its bounds, noting the lifting; a counterexample
        is recomputed from its theta and replayed on the original model (Unknown when it does not replay)."""
        lifted = {"lifted": {"transform": self.region.transform.name, "params": int(self.case.box.size),
                             "composed_model_sha256": self.problem.network.sha256}}
        if isinstance(outcome, Proven):
            certificate = outcome.certificate
            return Proven(replace(certificate, detail={**certificate.detail, **lifted}))
        if isinstance(outcome, Falsified):
            image, theta = self.image_of(outcome.counterexample.x)
            found = validate(network, self.original, image, tolerances, params=theta)
            if found is None:
                return Unknown(f"a counterexample over the parameters of {self.region.transform.name} "
                               f"(theta = {theta.tolist()}) did not replay on the original model")
            return Falsified(found)
        return outcome


def _check_prefix(prefix, region: Manipulated, samples: int = 16, seed: int = 0) -> None:
    """ModelError unless the ONNX prefix equals `transform.apply` (within float32 rounding) on the parameter
    box's corners, centre and random points: a proof over a prefix that differs would be about other images."""
    import onnxruntime as ort

    from verikit.core.errors import ModelError
    from verikit.onnx.load import evaluation_points

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(prefix.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for theta in evaluation_points(region.params, samples=samples, seed=seed):
        theta32 = theta.astype(np.float32)
        (got,) = session.run(None, {name: theta32.reshape(1, -1)})
        want = region.image(theta32.astype(np.float64))
        got = np.asarray(got, dtype=np.float64).reshape(-1)
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5):
            raise ModelError(f"the ONNX prefix of {region.transform.name} differs from its numpy reference at "
                             f"theta = {theta32.tolist()}; please report this")


def lift(problem: Problem, case: Case) -> Lifted | None:
    """The case over its parameters on the composed network, or None when it has no exact prefix."""
    region = case.region
    if not isinstance(region, Manipulated):
        return None
    prefix = region.transform.onnx_prefix()
    if prefix is None:
        return None
    from verikit.onnx.compose import compose_prefix

    _check_prefix(prefix, region)
    network = compose_prefix(problem.network, prefix, region.transform.n_params, eps=region.eps,
                             lower=case.box.lower, upper=case.box.upper)
    box = region.params
    if region.eps > 0:
        eps = np.full(problem.network.n_inputs, region.eps)
        box = Box(np.concatenate([box.lower, -eps]), np.concatenate([box.upper, eps]))
    lifted_case = Case(box, case.disjuncts, hidden=case.hidden)
    lifted_problem = Problem(network, seed=problem.seed, tolerances=problem.tolerances, device=problem.device)
    return Lifted(lifted_problem, lifted_case, case)
