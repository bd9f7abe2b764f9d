"""examples/card-expiring/run.py --check: the one-command example plays the
card-expiring story (signed Stripe webhook in, in-app message out)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "card-expiring" / "run.py"


@pytest.mark.e2e
def test_the_example_delivers_the_card_expiring_message(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE), "--check", "--daemon-port", "0", "--shop-port", "0",
                           "--data-dir", str(tmp_path / "demo")], capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "created automation card_expiring_notice" in done.stdout
    assert "'event': 'card_expiring'" in done.stdout
    assert "Your card ending 4242 expires 12/2026" in done.stdout
