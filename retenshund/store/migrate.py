"""Numbered SQL migrations (``migrations/NNNN_name.sql``), applied in order at start."""

from __future__ import annotations

import re
import sqlite3
from importlib import resources

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped in the package, in order."""
    found = []
    for entry in resources.files("retenshund.store").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text()))
    return sorted(found)


def apply_sqlite(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations this database has not seen; return their names."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
    applied = []
    for version, name, sql in migrations():
        if version in done:
            continue
        # executescript commits first; wrap the migration in its own transaction
        # so a failure leaves the schema at the previous version.
        conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nINSERT INTO schema_version VALUES ({version}, '{name}');\nCOMMIT;")
        applied.append(name)
    return applied
