"""Progress lines: counts, percentage, rate and ETA."""

import io

from mipnet_jax.core import progress


def test_progress_reports_counts_rate_and_eta():
  out = io.StringIO()
  p = progress.Progress(200, "eval coco_val", unit="boxes", every_s=0.0, stream=out)
  p.start -= 10.0                     # as if 10 s had passed
  p.update(50)
  line = out.getvalue().strip()
  assert line == "eval coco_val: 50/200 boxes (25%), 5.0 boxes/s, ETA 0:00:30, elapsed 0:00:10"
  p.close()
  assert out.getvalue().count("\n") == 2
  assert out.getvalue().splitlines()[1].startswith("eval coco_val: 50/200 boxes (25%), 5.0")
  assert progress.format_duration(3725) == "1:02:05"
  assert progress.format_duration(59.6) == "0:01:00" and progress.format_duration(-3) == "0:00:00"


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
