"""Progress lines: counts, percentage, rate and ETA."""

import io

from mipnet_jax.core import progress


def test_progress_reports_counts_rate_and_eta():
  out = io.StringIO()
  p = progress.Progress(200, "eval coco_val", unit="boxes", every_s=0.0, stream=out)
  p.start -= 10.0                     # as if 10 s had passed
  p.update(50)
  line = out.getvalue().strip()
  assert line.startswith("eval coco_val: 50/200 boxes (25%)")
  assert "5.0 boxes/s" in line and "ETA 0:00:30" in line
  p.close()
  assert out.getvalue().count("\n") == 2
  assert progress.format_duration(3725) == "1:02:05"


def test_unknown_total_and_disabled():
  out = io.StringIO()
  p = progress.Progress(None, "train", every_s=0.0, stream=out)
  p.update(3)
  assert "train: 3 it" in out.getvalue() and "ETA" not in out.getvalue()
  quiet = io.StringIO()
  q = progress.Progress(5, "x", stream=quiet, enabled=False)
  q.update(5)
  q.close()
  assert quiet.getvalue() == ""
