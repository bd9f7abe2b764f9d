"""Secrets the daemon needs and may have to make itself on first start: API keys,
the signing secret (user tokens, tracking links) and the VAPID key pair.

They live in ``<data_dir>/credentials.json`` with mode 0600; API keys are also
registered (as SHA-256 hashes) in the store, which is what requests are checked
against."""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from .vapid import generate_vapid_keys, load_vapid_keys, VapidKeys

FILE_NAME = "credentials.json"


class Credentials(msgspec.Struct, kw_only=True):
    signing_secret: str
    vapid_private_pem: str
    # Plain keys made at first start, kept so the operator can read them again.
    initial_secret_key: str = ""
    initial_publishable_key: str = ""

    def vapid(self) -> VapidKeys:
        return load_vapid_keys(self.vapid_private_pem)


def new_key(kind: str) -> str:
    prefix = {"secret": "sk_", "publishable": "pk_"}[kind]
    return prefix + secrets.token_urlsafe(24)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key: str) -> str:
    """A stable public handle for a key, safe to show and to pass to ``keys revoke``."""
    return "key_" + key_hash(key)[:12]


def key_hint(key: str) -> str:
    return key[:7] + "…" + key[-4:]


def key_kind(key: str) -> str | None:
    if key.startswith("sk_"):
        return "secret"
    if key.startswith("pk_"):
        return "publishable"
    return None


def _write_private(path: Path, data: bytes) -> None:
    # Create with 0600 from the start: never a moment where others can read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def load_or_create(data_dir: Path, *, make_keys: bool) -> tuple[Credentials, bool]:
    """The data dir's credentials, created if missing. Returns (credentials, created).

    ``make_keys``: also make a first secret and publishable key (when no keys
    exist anywhere yet)."""
    path = data_dir / FILE_NAME
    if path.exists():
        return msgspec.json.decode(path.read_bytes(), type=Credentials), False
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    creds = Credentials(
        signing_secret=secrets.token_urlsafe(32),
        vapid_private_pem=generate_vapid_keys().private_pem,
        initial_secret_key=new_key("secret") if make_keys else "",
        initial_publishable_key=new_key("publishable") if make_keys else "",
    )
    _write_private(path, msgspec.json.format(msgspec.json.encode(creds)))
    return creds, True


def remember_initial_keys(data_dir: Path, creds: Credentials, secret: str, publishable: str) -> Credentials:
    """Keep first-start keys made after the file was (the start message says
    they are in it). The file also holds the signing secret and the VAPID key,
    so it is replaced whole and durably: a new file (0600, a fresh name) synced,
    moved over the old one, and the folder synced."""
    updated = msgspec.structs.replace(creds, initial_secret_key=secret, initial_publishable_key=publishable)
    fd, tmp = tempfile.mkstemp(prefix=FILE_NAME + ".", dir=data_dir)  # mode 0600, O_EXCL
    try:
        os.write(fd, msgspec.json.format(msgspec.json.encode(updated)))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, data_dir / FILE_NAME)
    folder = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return updated


def as_dict(creds: Credentials) -> dict[str, Any]:
    return msgspec.to_builtins(creds)
