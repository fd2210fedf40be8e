"""The encoder's fixtures (tiny ONNX models, servers on port 0), shared with these tests."""

from tests.contract.encoder.conftest import onnx_models, repo, start_server

__all__ = ["onnx_models", "repo", "start_server"]
