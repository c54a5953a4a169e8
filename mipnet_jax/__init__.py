"""mipnet_jax: Multi-Instance Pose Networks (MIPNet, ICCV 2021) in JAX/Flax.

The package is laid out as the data flows; each stage imports only earlier ones:

    core/         keypoint metadata, box geometry, the heatmap codec, progress, XLA settings
    data/         annotations -> person records -> augmented crops + targets (grain)
    models/       HRNet / SimpleBaseline with MIMBs; build and load (variables, checkpoints)
    train/        the sharded train step and the training loop
    eval/         protocol, predict step, post-processing, evaluators, metrics
    serve/        export bundles, the Predictor API, --mode=predict
    interop/      PyTorch state_dict import
    checkpoints.py, experiments.py, main.py
"""
