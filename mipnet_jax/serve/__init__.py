"""Serving: export to a jax.export bundle, the standalone bundle runner, the Predictor API and
``--mode=predict``, drawing."""
