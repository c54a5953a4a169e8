"""Named person detectors: the published ONNX detectors of the RTMPose tooling, fetched on
first use into a cache folder and verified by SHA-256.

``resolve_detector("yolox_tiny_humanart")`` returns the path of the cached ``.onnx`` file,
downloading the published zip and extracting its ONNX file the first time; any other value
is taken as a local ``.onnx`` path. The cache is ``$MIPNET_JAX_CACHE/detectors`` (default
``~/.cache/mipnet_jax/detectors``). A download that fails (offline) or a file whose SHA-256
differs is one line naming the URL, the expected hash and the cache path where the file can
be placed by hand (the extracted ``.onnx``); a wrong file is never kept.

The registered hashes are those of the extracted ``.onnx`` files as published alongside
rtmlib's downloads (``rtmlib/tools/solution/body.py`` lists the URLs); this development
machine has no network, so they were not re-computed here. Both detectors are YOLOX trained
on COCO + Human-Art by OpenMMLab (``dets`` layout: NMS inside); Human-Art's terms restrict
it to non-commercial use, which applies to these weights too.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile

from mipnet_jax.data.raw_layout import sha256_file

_BASE = "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/onnx_sdk/"


@dataclasses.dataclass(frozen=True)
class Published:
  """A published detector: the zip's URL, the SHA-256 of the ``.onnx`` inside, its input."""

  url: str
  sha256: str
  input_hw: tuple[int, int]


NAMED_DETECTORS = {
    "yolox_tiny_humanart": Published(
        _BASE + "yolox_tiny_8xb8-300e_humanart-6f3252f9.zip",
        "ceb11c07298f95c50d7c5abeb906d03340c85f23aa79e3e66966e7fb6c307250", (416, 416)),
    "yolox_m_humanart": Published(
        _BASE + "yolox_m_8xb8-300e_humanart-c2c7a14a.zip",
        "3dea6513388889f0fff4b77bf7a26013600321b9eb9ceb0e9a400a82572f5f23", (640, 640)),
}


def cache_dir() -> str:
  return os.path.join(os.environ.get("MIPNET_JAX_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "mipnet_jax"), "detectors")


def fetch(name: str, spec: Published, folder: str | None = None) -> str:
  """The verified ``<folder>/<name>.onnx`` (folder: ``cache_dir()``), downloaded and
  extracted from ``spec.url`` unless already there (module docstring)."""
  folder = folder or cache_dir()
  target = os.path.join(folder, f"{name}.onnx")
  by_hand = (f"expected sha256 {spec.sha256}; the extracted .onnx can be placed by hand at "
             f"{target}")
  if os.path.isfile(target):
    if sha256_file(target) == spec.sha256:
      return target
    raise ValueError(f"{target}: sha256 {sha256_file(target)} differs from the published "
                     f"{spec.url}: {by_hand}")
  os.makedirs(folder, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=folder) as tmp:
    archive = os.path.join(tmp, "download")
    try:
      with urllib.request.urlopen(spec.url, timeout=60) as response, \
          open(archive, "wb") as out:
        shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as e:
      reason = getattr(e, "reason", None) or e
      raise ValueError(f"cannot download {spec.url} ({reason}): {by_hand}") from None
    onnx = _extract_onnx(archive, tmp, spec.url, by_hand)
    found = sha256_file(onnx)
    if found != spec.sha256:
      raise ValueError(f"{spec.url}: its .onnx has sha256 {found}: {by_hand}")
    os.replace(onnx, target)
  return target


def _extract_onnx(archive: str, folder: str, url: str, by_hand: str) -> str:
  """The one ``.onnx`` file of the zip ``archive`` (a bare .onnx download is taken as is)."""
  if not zipfile.is_zipfile(archive):
    return archive
  with zipfile.ZipFile(archive) as z:
    members = [m for m in z.namelist() if m.endswith(".onnx")]
    if len(members) != 1:
      raise ValueError(f"{url}: expected one .onnx file in the zip, found {members}: "
                       f"{by_hand}")
    with z.open(members[0]) as src, open(os.path.join(folder, "model.onnx"), "wb") as dst:
      shutil.copyfileobj(src, dst)
  return os.path.join(folder, "model.onnx")


def resolve_detector(value: str, folder: str | None = None) -> str:
  """``--detector``: a NAMED_DETECTORS name (fetched, cached, verified) or a local path."""
  if value in NAMED_DETECTORS:
    return fetch(value, NAMED_DETECTORS[value], folder)
  if not value.endswith(".onnx") and not os.path.isfile(value):
    raise ValueError(f"--detector={value}: not a named detector "
                     f"({', '.join(NAMED_DETECTORS)}) nor an .onnx file")
  return value
