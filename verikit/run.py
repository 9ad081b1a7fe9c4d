"""The one run path: every entry point (verify, run-instance, bench, gate, verikit-vnnlib) decides an
instance through `run_instance` (files) or `run_loaded` (a network and property already read), under one
error policy:

- bad input (unreadable/corrupt model or spec, sizes that do not fit, a translation that disagrees with
  onnxruntime) → verdict `error`, `error_kind="bad-input"`, exit code 3;
- a usage error (a device that is not there, a setting that does not exist) → `error`, "usage", exit 2;
- anything else is a bug → `error`, "internal", exit 4 (re-raised with `debug=True`), never a verdict;
- a well-formed VNN-LIB 2.0 query verikit cannot answer → `unknown` with the reason.

The budget counts from `started` (default: now), so reading the files counts against `options.timeout`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from verikit.core.errors import ExitCode, VerikitError
from verikit.core.network import Network
from verikit.core.property import Property
from verikit.core.result import Budget, Result, Verdict
from verikit.portfolio.options import Options
from verikit.portfolio.runner import verify

_KINDS = {ExitCode.BAD_INPUT: "bad-input", ExitCode.USAGE: "usage"}


def model_info(network: Network) -> dict:
    """What the report says about the model read."""
    return {"inputs": network.n_inputs, "outputs": network.n_outputs, "input_shape": list(network.input_shape),
            "op_types": sorted(network.op_types)}


def run_instance(model_path: str | Path, spec_path: str | Path, options: Options = Options(), *,
                 started: float | None = None, debug: bool = False,
                 progress: Callable[[dict], None] | None = None) -> Result:
    """Read an ONNX model and a spec file and verify; never raises for bad input or engine failures."""
    started = time.monotonic() if started is None else started
    return _guarded(lambda: _load_and_verify(str(model_path), str(spec_path), options, started, progress),
                    str(model_path), str(spec_path), options, started, debug)


def run_loaded(network: Network, prop: Property, options: Options = Options(), *,
               budget: Budget | None = None, debug: bool = False) -> Result:
    """Verify a network and property the caller read itself, under the same error policy as run_instance.
    `budget` (default: `options.timeout` from now) bounds the whole verification."""
    started = time.monotonic()
    budget = budget or Budget(started + options.timeout)
    return _guarded(lambda: _verify(network, prop, options, budget), network.source, prop.source, options,
                    started, debug)


def _verify(network: Network, prop: Property, options: Options, budget: Budget,
            progress: Callable[[dict], None] | None = None) -> Result:
    result = verify(network, prop, options, budget=budget, progress=progress)
    result.model_info = model_info(network)
    return result


def _load_and_verify(model_path: str, spec_path: str, options: Options, started: float,
                     progress: Callable[[dict], None] | None = None) -> Result:
    from verikit.onnx.load import load_network
    from verikit.spec.load import load_spec
    from verikit.spec.vnnlib import read_spec_text
    from verikit.spec.vnnlib2 import UnsupportedQuery

    network = load_network(model_path)
    try:
        prop = load_spec(spec_path, n_inputs=network.n_inputs, n_outputs=network.n_outputs, network=network)
    except UnsupportedQuery as error:
        return Result(verdict=Verdict.UNKNOWN, model_sha256=network.sha256,
                      spec_sha256=read_spec_text(spec_path)[1], model_path=network.source, spec_path=spec_path,
                      seconds=time.monotonic() - started, reason=str(error), seed=options.seed,
                      settings=options.as_dict(), model_info=model_info(network))
    return _verify(network, prop, options, Budget(started + options.timeout), progress)


def _guarded(work: Callable[[], Result], model_path: str, spec_path: str, options: Options, started: float,
             debug: bool) -> Result:
    """`work()`, with every failure turned into an `error` Result that says what went wrong."""
    try:
        return work()
    except VerikitError as error:
        kind, reason = _KINDS.get(error.exit_code, "internal"), str(error)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # a bug: reported as one, never as a verdict
        if debug:
            raise
        kind, reason = "internal", f"internal error: {type(error).__name__}: {error}"
    return Result(verdict=Verdict.ERROR, model_sha256="", spec_sha256="", model_path=model_path,
                  spec_path=spec_path, seconds=time.monotonic() - started, reason=reason, seed=options.seed,
                  settings=options.as_dict(), error_kind=kind)
