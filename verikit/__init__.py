"""verikit: verify and audit the robustness of neural networks given as ONNX."""

__version__ = "0.1.0"
