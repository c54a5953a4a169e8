"""onnxruntime sessions (serve/onnx_runtime.py): the one-line errors for missing, broken and
foreign ONNX files, and the providers default."""

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
from onnx import TensorProto, helper  # noqa: E402

from mipnet_jax.serve import onnx_runtime  # noqa: E402


def test_missing_broken_and_foreign_files(tmp_path):
  with pytest.raises(ValueError, match=r"^.*nothing\.onnx: pose model file not found$"):
    onnx_runtime.onnx_crops_fn(str(tmp_path / "nothing.onnx"))
  junk = tmp_path / "junk.onnx"
  junk.write_text("this is not a protobuf")
  with pytest.raises(ValueError) as info:
    onnx_runtime.onnx_crops_fn(str(junk))
  assert str(info.value).startswith(f"{junk}: not a usable ONNX model (")
  assert "\n" not in str(info.value)
  node = helper.make_node("Identity", ["images"], ["dets"])
  graph = helper.make_graph([node], "other", [helper.make_tensor_value_info(
      "images", TensorProto.FLOAT, [1, 3, 8, 8])], [helper.make_tensor_value_info(
          "dets", TensorProto.FLOAT, [1, 3, 8, 8])])
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
  model.ir_version = 8
  other = tmp_path / "other.onnx"
  other.write_bytes(model.SerializeToString())
  with pytest.raises(ValueError, match=r"other\.onnx: not an exported pose model \(inputs "
                                       r"\['images'\], outputs \['dets'\]; expected crops"):
    onnx_runtime.onnx_crops_fn(str(other))
  session = onnx_runtime.open_session(str(other), "any")          # a usable model opens
  np.testing.assert_array_equal(session.run(None, {"images": np.ones((1, 3, 8, 8),
                                                                     np.float32)})[0], 1)


def test_default_providers_end_with_the_cpu():
  providers = onnx_runtime.default_providers()
  assert providers[-1] == "CPUExecutionProvider"
  assert set(providers) <= set(onnx_runtime.PREFERRED_PROVIDERS)
