"""The dashboard's automation export (web/dashboard/js/toml.js) writes TOML that
`retenshund apply` reads back as exactly the definition (Node writes, tomllib reads)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from retenshund.engine.definitions import compile_automation

TOML_JS = Path(__file__).resolve().parents[1] / "web" / "dashboard" / "js" / "toml.js"

DEFINITIONS = [
    {"name": "Cart recovery", "trigger": {"event": "cart_abandoned", "where": {"properties.total": {"gt": 50}}},
     "steps": [{"wait": "1h"}, {"send": {"channel": "email", "template_id": "cart_recovery_1"}},
               {"wait_for": "order_completed", "timeout": "24h", "if_happened": [],
                "if_not": [{"send": {"channel": ["push", "in_app"], "template_id": "cart_recovery_2",
                                     "variables": {"discount": 0.15, "code": "SAVE \"15\"\n\\now"}}}]}],
     "exit_on": ["order_completed"], "goal": {"event": "order_completed", "within": "7d"},
     "holdout_percent": 12.5, "frequency_cap": {"max": 1, "per": "7d"},
     "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Europe/Berlin"}, "enabled": False},
    {"name": "Re-engage — café ☕", "description": "nested branches",
     "trigger": {"schedule": "0 9 * * 1", "segment": "dormant"},
     "steps": [{"if": {"all": [{"trait": "plan", "op": "eq", "value": "pro"},
                               {"not": {"event": "login", "count": {"gte": 3}, "within": "7d"}}]},
                "then": [{"webhook": {"url": "https://hooks.example.com/x", "body": {"user": "{{ user.id }}",
                                                                                  "tags": ["a", "b"]}}}],
                "else": [{"wait": "1d"}, {"if": {"engagement": "below_baseline", "ratio": 0.5},
                                          "then": [{"send": {"channel": "in_app", "template_id": "miss_you"}}],
                                          "else": []}]}],
     "enabled": True},
]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
@pytest.mark.parametrize("definition", DEFINITIONS, ids=["cart", "nested"])
def test_exported_toml_reads_back_as_the_same_definition(tmp_path: Path, definition: dict) -> None:  # type: ignore[type-arg]
    shutil.copy(TOML_JS, tmp_path / "toml.mjs")
    script = tmp_path / "export.mjs"
    script.write_text("import { toToml } from './toml.mjs';\n"
                      "let input = '';\nprocess.stdin.on('data', (c) => input += c);\n"
                      "process.stdin.on('end', () => process.stdout.write(toToml(JSON.parse(input), 'a header')));\n")
    done = subprocess.run(["node", str(script)], input=json.dumps(definition), capture_output=True, text=True,
                          timeout=30, check=True)
    assert done.stdout.startswith("# a header\n")
    assert tomllib.loads(done.stdout) == definition
    compile_automation("exported", tomllib.loads(done.stdout))  # and the engine accepts it


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_null_values_are_left_out(tmp_path: Path) -> None:
    shutil.copy(TOML_JS, tmp_path / "toml.mjs")
    (tmp_path / "n.mjs").write_text("import { toToml } from './toml.mjs';\n"
                                     "console.log(toToml({name: 'x', goal: null, trigger: {event: 'e', where: null}}));\n")
    out = subprocess.run(["node", str(tmp_path / "n.mjs")], capture_output=True, text=True, check=True).stdout
    assert tomllib.loads(out) == {"name": "x", "trigger": {"event": "e"}}
