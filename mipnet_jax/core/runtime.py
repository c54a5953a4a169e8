"""Process-level XLA settings, applied before JAX initialises its backend.

XLA:CPU (jaxlib 0.10) can hand convolutions and element-wise work to the YNNPACK library;
which hand-off is fastest depends on the network (measured on a 2-core AVX-512 CPU with
scripts/bench_model.py, batch 8, 256x192, fp32, img/s inference / train step):

  HRNet-W32      default 7.0 / 1.0    ``eltwise``                 8.5 / 2.3
  SBL R-50       default 13.9 / 3.3   ``eltwise``                 11.8 / 2.6

(default = ``-individual_convolution``: every convolution in its own YNNPACK call.) HRNet
has ~300 small convolutions, each followed by BatchNorm / ReLU / residual / fusion adds, and
gains most from multi-threaded element-wise kernels. XLA reads XLA_FLAGS when the backend is
created (the first JAX computation), so ``configure_cpu_xla`` can be called after ``import
jax`` but must precede any computation. The flags only affect the CPU backend.
"""

from __future__ import annotations

import os

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
CPU_XLA_FLAGS = {
    "hrnet": (f"{YNN_FLAG}=eltwise",),
    "simple_baseline": (f"{YNN_FLAG}=-individual_convolution",),
}


def configure_cpu_xla(architecture: str = "simple_baseline") -> str:
  """Adds the CPU flags best for ``architecture`` ('hrnet' or 'simple_baseline') to
  XLA_FLAGS, unless the user set that flag already or MIPNET_NO_XLA_FLAGS=1.

  Returns the resulting XLA_FLAGS.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if os.environ.get("MIPNET_NO_XLA_FLAGS") == "1":
    return flags
  for flag in CPU_XLA_FLAGS.get(architecture, ()):
    if flag.split("=")[0] not in flags:
      flags = f"{flags} {flag}".strip()
  os.environ["XLA_FLAGS"] = flags
  return flags
