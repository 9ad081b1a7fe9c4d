"""Deliberately unsound (or sloppy) verifiers, for testing `verikit soundness run`.

    python faulty.py FAULT v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT

Each fault wraps verikit's one run path (verikit.run) and breaks one thing:

  drop_row      drops the last disjunct of every case (a parser that loses one `or` branch): it may
                answer unsat when the only counterexamples satisfy the dropped branch
  loosen        looks for violations by more than LOOSEN (C y <= d - LOOSEN): proves "unsat" where the
                lower bound of the margin is only above -LOOSEN, so small counterexamples are missed
  shrink_box    shrinks every input box to SHRINK of its radius around the centre (input bounds rounded
                the wrong way, scaled up): counterexamples near the box's rim are missed
  never_attack  bounds only, no attack, and answers unsat whenever the bounds are inconclusive
  fake_witness  answers sat with the box centre as witness without checking it (a false alarm)
  no_witness    answers `violated` (sat) with no witness, as nnenum's run_instance.sh writes it: on the
                planted instances a right answer that cannot be checked (unchecked, not a false alarm)
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from verikit.core.property import Box, Case, Conjunction, Property
from verikit.portfolio.options import Options
from verikit.report import vnncomp
from verikit.run import run_instance, run_loaded

LOOSEN = 1.0
SHRINK = 0.4


def drop_last_disjunct(prop: Property) -> Property:
    return replace(prop, cases=tuple(Case(c.box, c.disjuncts[:-1]) for c in prop.cases))


def loosen(prop: Property) -> Property:
    cases = tuple(Case(c.box, tuple(Conjunction(j.C, j.d - LOOSEN) for j in c.disjuncts)) for c in prop.cases)
    return replace(prop, cases=cases)


def shrink_box(prop: Property) -> Property:
    def shrunk(box: Box) -> Box:
        return Box(box.center - SHRINK * box.radius, box.center + SHRINK * box.radius)

    return replace(prop, cases=tuple(Case(shrunk(c.box), c.disjuncts) for c in prop.cases))


def never_attack(onnx: str, vnnlib: str, result_file: str, timeout: float) -> None:
    result = run_instance(onnx, vnnlib, Options(timeout=timeout, engines=("bounds",)))
    vnncomp.write(result, result_file)
    if result.verdict.vnncomp in ("unknown", "timeout"):
        Path(result_file).write_text("unsat\n")  # the fault: "no counterexample found" read as "none exists"


def fake_witness(onnx: str, vnnlib: str, result_file: str, timeout: float) -> None:
    from verikit.onnx.load import load_network
    from verikit.spec.load import load_spec
    from verikit.witness.formats import format_vnncomp

    network = load_network(onnx)
    prop = load_spec(vnnlib, n_inputs=network.n_inputs, n_outputs=network.n_outputs)
    x = prop.cases[0].box.center
    Path(result_file).write_text(format_vnncomp(x, network.replay(x[None, :])[0]))


def no_witness(onnx: str, vnnlib: str, result_file: str, timeout: float) -> None:
    Path(result_file).write_text("violated\n")  # the 2021 word for sat, and no witness


TRANSFORMS = {"drop_row": drop_last_disjunct, "loosen": loosen, "shrink_box": shrink_box}
RUNNERS = {"never_attack": never_attack, "fake_witness": fake_witness, "no_witness": no_witness}
OPTIONS = {"loosen": Options(engines=("bounds", "bab"))}  # no attack: it cannot find a violation by LOOSEN


def transformed(fault: str, onnx: str, vnnlib: str, result_file: str, timeout: float) -> None:
    """verikit on the property as the fault rewrites it (the run path itself stays unmodified)."""
    from verikit.onnx.load import load_network
    from verikit.spec.load import load_spec

    network = load_network(onnx)
    prop = load_spec(vnnlib, n_inputs=network.n_inputs, n_outputs=network.n_outputs)
    options = replace(OPTIONS.get(fault, Options()), timeout=timeout)
    vnncomp.write(run_loaded(network, TRANSFORMS[fault](prop), options), result_file)


def main(argv: list[str]) -> int:
    if len(argv) != 7 or argv[1] != "v1" or argv[0] not in {*TRANSFORMS, *RUNNERS}:
        print(__doc__, file=sys.stderr)
        return 2
    fault, _, _category, onnx, vnnlib, result_file, timeout = argv
    if fault in RUNNERS:
        RUNNERS[fault](onnx, vnnlib, result_file, float(timeout))
    else:
        transformed(fault, onnx, vnnlib, result_file, float(timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
