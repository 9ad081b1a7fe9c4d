"""Branch and bound on tensors: ReLU splits bounded through auto_LiRPA's graph (CNNs, residual networks),
for networks the MLP branch and bound (verikit.engines.bab) cannot take without densifying.

    bounding.py  auto_LiRPA calls: root bounds and α, a batch of split domains bounded at once (β-CROWN)
    confirm.py   every closed domain re-bounded rigorously on the float64 graph form
    domains.py   packed split sets, the byte-capped queue, the branching score
    search.py    the loop and its verdicts
    engine.py    TensorBabEngine behind the Engine protocol
"""
