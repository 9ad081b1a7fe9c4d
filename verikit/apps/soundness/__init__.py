"""Soundness testing: benchmarks with hidden counterexamples, and a harness that judges any verifier.

    generate   write a VNN-COMP style benchmark whose answers (planted counterexamples) sit apart
    harness    run verikit or an external tool (VNN-COMP `run_instance` convention) on every instance
    judge      compare each answer with the known truth: soundness bugs, false alarms, wrong truths
"""
