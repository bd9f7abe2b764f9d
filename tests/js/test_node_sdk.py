"""Runs the SDK's JavaScript tests (`node --test tests/js/`) as part of the one test command."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed (.ci/run installs it)")
def test_sdk_javascript_suite_passes() -> None:
    here = Path(__file__).parent
    result = subprocess.run(["node", "--test", str(here)], capture_output=True, text=True, timeout=300)
    summary = "\n".join(line for line in result.stdout.splitlines() if line.startswith("# "))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in summary and "# pass 0" not in summary, summary
