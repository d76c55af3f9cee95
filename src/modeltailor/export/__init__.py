"""Export and use: verified ONNX (fp32 and int8) exports of a run."""

from modeltailor.export.onnx import ExportError, export_onnx

__all__ = ["ExportError", "export_onnx"]
