"""The activation-chain form of a Problem's network (verikit.onnx.activation_chain), built once through
Problem.form and checked against onnxruntime on each case's box before branch and bound trusts it."""

from __future__ import annotations

from verikit.core.activations import ActivationChain, NoActivationChain
from verikit.core.errors import EngineLimitation, ModelError
from verikit.core.property import Case

S_SHAPED_OPS = frozenset({"Sigmoid", "Tanh"})


def activation_chain(problem) -> ActivationChain:
    """The network as Affine/activation layers (EngineLimitation with the reason if it is not one)."""

    def build() -> ActivationChain:
        from verikit.onnx.activation_chain import to_activation_chain

        try:
            return to_activation_chain(problem.network)
        except NoActivationChain as reason:
            raise EngineLimitation(f"branch and bound needs an MLP of supported activations: {reason}") from None

    return problem.form("activation-chain", build)


def checked_activation_chain(problem, case: Case) -> ActivationChain:
    """The chain, checked against onnxruntime on the case's box first (EngineLimitation on a mismatch)."""

    def check() -> ActivationChain:
        from verikit.onnx.activation_chain import check_activation_chain

        chain = activation_chain(problem)
        try:
            check_activation_chain(problem.network, chain, case.box, seed=problem.seed)
        except ModelError as error:
            raise EngineLimitation(str(error)) from None
        return chain

    return problem.form(f"activation-chain checked on case {id(case)}", check)


def s_shaped_reason(problem) -> str | None:
    """None when the network is an MLP with a sigmoid/tanh layer that branch and bound can split; else why not."""
    try:
        chain = activation_chain(problem)
    except EngineLimitation as limitation:
        return str(limitation)
    if not chain.has_s_shaped:
        return "the network has no sigmoid or tanh layer"
    return None
