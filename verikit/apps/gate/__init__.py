"""Release gates: a policy file (verikit.toml) of models, datasets and properties, run in CI.

    policy = load_policy("verikit.toml")      # verikit.apps.gate.policy: parse and validate
    result = run_gate(policy)                 # verikit.apps.gate.run: check every property, compare with a baseline
"""
