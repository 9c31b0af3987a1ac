"""Model registry helpers: snapshot provenance, and models.py staying below the downloader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fmriscaling.models import SNAPSHOT_RECORD, snapshot_record

REPO = Path(__file__).resolve().parents[1]


def test_models_does_not_import_the_downloader():
    # feature extraction imports models.py; it must not pull in requests, urllib3 and the CLI
    code = (
        "import sys; from fmriscaling.models import snapshot_record; snapshot_record('absent'); "
        "print(sorted(m for m in sys.modules if 'download' in m))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_snapshot_record_reads_the_download_record(tmp_path):
    record = {"repo_id": "acme/tiny-lm", "revision": "main", "commit": "0" * 40}
    (tmp_path / SNAPSHOT_RECORD).write_text(json.dumps(record))
    assert snapshot_record(tmp_path) == {
        "model_id": "acme/tiny-lm",
        "revision": "main",
        "commit": "0" * 40,
        "snapshot_provenance": str(tmp_path / SNAPSHOT_RECORD),
    }
    assert snapshot_record(tmp_path / "absent")["model_id"] is None
