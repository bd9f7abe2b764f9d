"""The command line: first start makes keys, `keys` manages them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import pytest

from retenshund.cli import main
from retenshund.config import load_config
from tests.conftest import running
from tests.support.daemon import Daemon


async def test_first_start_makes_keys_stores_them_0600_and_they_work(tmp_path: Path) -> None:
    config = load_config(None, env={}, overrides={"store": {"data_dir": str(tmp_path / "d")}})
    async with running(config) as api:
        creds_path = tmp_path / "d" / "credentials.json"
        assert stat.S_IMODE(os.stat(creds_path).st_mode) == 0o600
        # The store holds personal data: the folder and its files are the owner's alone.
        assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == 0o700
        for name in ("retenshun.db", "retenshun.db-wal", "retenshun.db-shm"):
            assert stat.S_IMODE(os.stat(tmp_path / "d" / name).st_mode) == 0o600, name
        creds = json.loads(creds_path.read_text())
        sk, pk = creds["initial_secret_key"], creds["initial_publishable_key"]
        assert sk.startswith("sk_") and pk.startswith("pk_")
        assert creds["signing_secret"] and "PRIVATE KEY" in creds["vapid_private_pem"]
        assert (await api.post("/v1/track", {"userId": "u", "event": "e"}, key=pk)).status_code == 200
        assert (await api.get("/v1/users/u", key=sk)).status_code == 200
        assert (await api.get("/v1/users/u", key=pk)).status_code == 403
    # A second start keeps the same keys and makes no new ones.
    async with running(config) as api:
        assert len(await api.services.store.list_api_keys()) == 2
        assert (await api.get("/v1/users/u", key=sk)).status_code == 200


async def test_keys_made_after_the_credentials_file_are_written_into_it(tmp_path: Path) -> None:
    """The start message says the keys are in credentials.json: also when that
    file was made on an earlier start that had keys from the config."""
    d = tmp_path / "d"
    with_keys = load_config(None, env={}, overrides={"store": {"data_dir": str(d)},
                                                     "auth": {"secret_keys": ["sk_" + "c" * 32]}})
    async with running(with_keys):
        pass
    assert json.loads((d / "credentials.json").read_text())["initial_secret_key"] == ""
    (d / "retenshun.db").unlink()  # a fresh store: no keys anywhere now
    for suffix in ("-wal", "-shm"):
        (d / f"retenshun.db{suffix}").unlink(missing_ok=True)
    config = load_config(None, env={}, overrides={"store": {"data_dir": str(d)}})
    async with running(config) as api:
        creds = json.loads((d / "credentials.json").read_text())
        sk, pk = creds["initial_secret_key"], creds["initial_publishable_key"]
        assert stat.S_IMODE(os.stat(d / "credentials.json").st_mode) == 0o600
        assert (await api.get("/v1/users/u", key=sk)).status_code == 404
        assert (await api.post("/v1/track", {"userId": "u", "event": "e"}, key=pk)).status_code == 200


def test_keys_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "d")
    assert main(["keys", "--data-dir", d, "create", "--kind", "publishable", "--label", "web"]) == 0
    out = capsys.readouterr().out
    key = next(w for w in out.split() if w.startswith("pk_"))
    key_id = next(w for w in out.split() if w.startswith("key_"))
    assert main(["keys", "--data-dir", d, "list"]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "active" in listing and key not in listing  # only a hint is shown
    assert main(["keys", "--data-dir", d, "revoke", key_id]) == 0
    assert main(["keys", "--data-dir", d, "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "--data-dir", d, "revoke", "key_nope"]) == 1


def test_bad_config_exits_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = 0\n')
    assert main(["--config", str(bad)]) == 2
    assert "server.port" in capsys.readouterr().err


@pytest.mark.e2e
def test_sigterm_finishes_requests_and_closes_cleanly(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "data").start()
    try:
        r = httpx.post(d.url + "/v1/batch", json={"batch": [
            {"type": "track", "userId": "u1", "event": "e", "messageId": f"m{i}"} for i in range(100)]},
            headers={"Authorization": "Bearer pk_e2e_publishable_0001"})
        assert r.status_code == 200
    finally:
        code = d.stop()
    # uvicorn re-raises the signal after its graceful shutdown, so the exit
    # status reports SIGTERM; what matters is that shutdown ran to the end.
    assert code in (0, -15)
    # Closing the store's last connection checkpoints and removes the WAL; a
    # killed process leaves it behind.
    assert not (tmp_path / "data" / "retenshun.db-wal").exists()
    import sqlite3

    conn = sqlite3.connect(tmp_path / "data" / "retenshun.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (100,)


def test_common_flags_work_before_and_after_the_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "d")
    assert main(["--data-dir", d, "keys", "create"]) == 0
    key_id = next(w for w in capsys.readouterr().out.split() if w.startswith("key_"))
    for argv in (["--data-dir", d, "keys", "list"], ["keys", "--data-dir", d, "list"], ["keys", "list", "--data-dir", d]):
        assert main(argv) == 0
        assert key_id in capsys.readouterr().out, argv


def test_a_port_in_use_exits_1_saying_so_before_making_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        assert main(["--data-dir", str(tmp_path / "d"), "--port", str(port)]) == 1
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err and "Traceback" not in err
    assert not (tmp_path / "d" / "credentials.json").exists()  # no keys made for a daemon that never ran


def test_listing_keys_where_there_is_no_store_makes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "nowhere"
    assert main(["keys", "--data-dir", str(d), "list"]) == 0
    assert "no store in" in capsys.readouterr().err
    assert main(["keys", "--data-dir", str(d), "revoke", "key_abc"]) == 1
    assert not d.exists()
