"""Settings come from defaults, the TOML file, env vars and flags, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from retenshund.config import ConfigError, load_config


def test_defaults_match_the_contract() -> None:
    c = load_config(None, env={})
    assert (c.server.host, c.server.port) == ("127.0.0.1", 8470)
    assert c.store.data_dir == "./retenshun-data" and c.store.synchronous == "NORMAL"
    assert c.store.dedupe_window == "7d"


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[store]\nsynchronous = "FULL"\n')
    c = load_config(f, env={"RETENSHUN_SERVER_PORT": "9100", "RETENSHUN_AUTH_SECRET_KEYS": "sk_a, sk_b"},
                    overrides={"server": {"host": "127.0.0.2", "port": None}})
    assert c.server.port == 9100 and c.server.host == "127.0.0.2"
    assert c.store.synchronous == "FULL"
    assert c.auth.secret_keys == ["sk_a", "sk_b"]


@pytest.mark.parametrize("toml, env, mentions", [
    ('[server]\nport = "eighty"\n', {}, "server.port"),
    ('[store]\nsynchronous = "SOMETIMES"\n', {}, "store.synchronous"),
    ('[store]\ndedupe_window = "a week"\n', {}, "store.dedupe_window"),
    ('[server]\nnope = 1\n', {}, "nope"),
    ("[server\n", {}, "r.toml"),
    ("", {"RETENSHUN_SERVER_PORT": "x"}, "RETENSHUN_SERVER_PORT"),
    ('[auth]\nsigning_secret = "short"\n', {}, "auth.signing_secret"),
    ('[store]\nsynchronous = "OFF"\n', {}, "store.synchronous"),
    ('[store]\nbackend = "postgres"\npostgres_dsn = "postgresql://x@localhost/r"\n', {}, "not available"),
    ('[store]\nbackend = "mysql"\n', {}, "store.backend"),
    ('[auth]\nuser_token_ttl = "500ms"\n', {}, "auth.user_token_ttl"),
    ('[auth]\nuser_token_ttl = "400d"\n', {}, "auth.user_token_ttl"),
    ("", {"RETENSHUN_LOG_LEVEL": "verbose"}, "log.level"),
    ('[log]\nformat = "xml"\n', {}, "log.format"),
])
def test_errors_name_the_setting(tmp_path: Path, toml: str, env: dict[str, str], mentions: str) -> None:
    f = tmp_path / "r.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(f, env=env)
    assert mentions in str(info.value)


def test_missing_file_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config.example.toml"):
        load_config(tmp_path / "absent.toml", env={})


def test_the_example_config_is_valid_and_documents_every_key() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    c = load_config(example, env={})
    text = example.read_text()
    import msgspec

    for section, values in msgspec.to_builtins(c).items():
        assert f"[{section}]" in text, section
        if isinstance(values, dict):
            for key in values:
                assert f"{key} =" in text or f"# {key} =" in text, f"{section}.{key}"


def test_log_and_sync_spellings_people_use_are_accepted(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text('[store]\nsynchronous = "EXTRA"\n[log]\nlevel = "warn"\nformat = "JSON"\n')
    c = load_config(f, env={})
    assert (c.store.synchronous, c.log.level, c.log.format) == ("EXTRA", "warn", "JSON")
