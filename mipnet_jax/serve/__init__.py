"""Serving: export to a jax.export bundle (and model.onnx), the standalone bundle runner (JAX
or onnxruntime), the Predictor API and ``--mode=predict`` on images and videos, ONNX person
detectors, pose tracking, drawing."""
