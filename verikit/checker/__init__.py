"""An independent checker of verikit certificates: numpy, onnx and the spec reader only (no torch, no
engine). `check_certificate(model, spec, load_certificate(path))` -> CheckReport (docs/certificates.md)."""

from verikit.checker.check import BadCertificate, CheckReport, check_certificate, load_certificate
from verikit.checker.network import UnsupportedNetwork, read_chain

__all__ = ["BadCertificate", "CheckReport", "UnsupportedNetwork", "check_certificate", "load_certificate",
           "read_chain"]
