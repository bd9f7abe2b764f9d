"""Inbound webhooks, the pure part: the ``[webhooks.<name>]`` settings, signature
checks (Stripe and Standard Webhooks) and turning a payload into an event.

No I/O here: the route (api/webhooks.py) reads the body and calls these, the
store records the outcome (store/sqlite_webhooks.py)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from .config import ConfigError
from .errors import ApiError
from .jsonbody import DECODE_ERRORS, check_depth, json_error

KINDS = ("stripe", "standard")
# Real provider events are a few KB; the cap only stops abuse.
MAX_BODY = 256 * 1024
TOLERANCE_MS = 5 * 60 * 1000
DAY_MS = 86_400_000
# Seen event ids are kept this long (providers retry for up to 3 days), no
# matter how short store.dedupe_window is.
DEDUPE_MS = 7 * DAY_MS
# Unmatched webhooks stay listed this long; those younger than the replay
# window are replayed when a user gets the trait (older news is no use).
UNMATCHED_KEEP_MS = 30 * DAY_MS
REPLAY_WINDOW_MS = 7 * DAY_MS
MAX_ID = 255
RESERVED_PROPERTIES = ("webhook_source", "webhook_event_id")

# Trait names end up inside SQL (an expression index per trait cannot take a
# bound parameter), so they are restricted to plain identifiers.
TRAIT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# "unmatched" would shadow GET /v1/webhooks/unmatched's sibling POST route.
RESERVED_SOURCES = ("unmatched",)

SOURCE_KEYS = ("kind", "secret", "secret_env", "map")
MAP_KEYS = ("type", "event", "user_trait", "user_path", "user_id_path", "properties")

Path = tuple[str, ...]


class MapRule(msgspec.Struct, frozen=True, kw_only=True):
    """One ``[[webhooks.<name>.map]]`` entry, validated."""

    type: str
    event: str
    user_trait: str | None = None
    user_path: Path | None = None
    user_id_path: Path | None = None
    properties: dict[str, Path] = {}


class Source(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str  # stripe | standard
    key: bytes  # the HMAC key
    maps: dict[str, MapRule]  # by payload type


class Mapped(msgspec.Struct, kw_only=True):
    """A verified webhook turned into the event it becomes, and how to find its user.

    Exactly one way is set: ``user_id`` (the payload names the user), or
    ``user_trait`` + ``lookup_value`` (the user whose trait has that value).
    ``problem`` says why neither could be read from the payload."""

    source: str
    event_id: str
    type: str
    event: str
    properties: dict[str, Any]
    user_id: str | None = None
    user_trait: str | None = None
    lookup_value: str | int | None = None
    problem: str | None = None


class Ignored(msgspec.Struct, kw_only=True):
    """A verified webhook no map entry wants (acknowledged, so it is not retried)."""

    source: str
    event_id: str
    type: str | None
    reason: str


class Outcome(msgspec.Struct, kw_only=True):
    """What the store did with a webhook: stored | unmatched | ignored, or a duplicate."""

    outcome: str
    detail: str | None = None
    duplicate: bool = False


class SignatureError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- settings -------------------------------------------------------------------


def parse_settings(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Source]:
    """The ``[webhooks]`` section as sources by name; ConfigError names the key and the fix."""
    env = os.environ if env is None else env
    sources: dict[str, Source] = {}
    for name, table in raw.items():
        where = f"webhooks.{name}"
        if not SOURCE_NAME.match(name) or name in RESERVED_SOURCES:
            raise ConfigError(f"{where}: a source name is lower-case letters, digits, - and _"
                              f" (it is the URL /v1/webhooks/<name>); {name!r} cannot be used")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: must be a table with kind, secret and [[{where}.map]] entries")
        _no_unknown_keys(table, SOURCE_KEYS, where)
        kind = table.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{where}.kind: must be \"stripe\" (Stripe-Signature header) or \"standard\""
                              f" (Standard Webhooks headers), got {kind!r}")
        key = _key(kind, _secret(table, where, env), where)
        maps_raw = table.get("map", [])
        if not isinstance(maps_raw, list):
            raise ConfigError(f"{where}.map: write each entry as [[{where}.map]] (an array of tables)")
        maps: dict[str, MapRule] = {}
        for i, entry in enumerate(maps_raw):
            rule = _map_rule(entry, f"{where}.map[{i}]")
            if rule.type in maps:
                raise ConfigError(f"{where}.map[{i}].type: {rule.type!r} is mapped twice; keep one entry per type")
            maps[rule.type] = rule
        sources[name] = Source(name=name, kind=kind, key=key, maps=maps)
    return sources


def trait_names(sources: Mapping[str, Source]) -> list[str]:
    """Every trait some map looks users up by (each gets an index)."""
    return sorted({r.user_trait for s in sources.values() for r in s.maps.values() if r.user_trait})


def _no_unknown_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key; allowed here: {', '.join(allowed)}")


def _secret(table: Mapping[str, Any], where: str, env: Mapping[str, str]) -> str:
    secret, var = table.get("secret"), table.get("secret_env")
    if (secret is None) == (var is None):
        raise ConfigError(f"{where}.secret: set the signing secret (secret = \"whsec_...\"), or"
                          f" secret_env = \"NAME\" to read it from that environment variable; not both")
    if var is not None:
        if not isinstance(var, str) or not var:
            raise ConfigError(f"{where}.secret_env: the name of an environment variable, e.g. \"STRIPE_WEBHOOK_SECRET\"")
        secret = env.get(var)
        if not secret:
            raise ConfigError(f"{where}.secret_env: environment variable {var} is not set or empty")
    if not isinstance(secret, str) or not secret.strip():
        raise ConfigError(f"{where}.secret: must be the provider's signing secret as a string (\"whsec_...\")")
    return secret.strip()


def _key(kind: str, secret: str, where: str) -> bytes:
    if kind == "stripe":
        # Stripe uses the whole "whsec_..." string as the HMAC key.
        return secret.encode()
    # Standard Webhooks: base64 after an optional "whsec_" prefix.
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 16:
        raise ConfigError(f"{where}.secret: a Standard Webhooks secret is \"whsec_\" followed by base64 of"
                          f" at least 16 random bytes; copy it as the provider shows it")
    return key


def _path(value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value or any(not part for part in value.split(".")):
        raise ConfigError(f"{where}: a dotted path into the payload such as \"data.object.customer\""
                          f" (list items by number: \"data.items.0.price\")")
    return tuple(value.split("."))


def _map_rule(entry: Any, where: str) -> MapRule:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: must be a table with type, event and user_trait + user_path or user_id_path")
    _no_unknown_keys(entry, MAP_KEYS, where)
    type_, event = entry.get("type"), entry.get("event")
    if not isinstance(type_, str) or not type_:
        raise ConfigError(f"{where}.type: the payload's \"type\" this entry handles, e.g. \"customer.source.expiring\"")
    if not isinstance(event, str) or not event or len(event) > MAX_ID:
        raise ConfigError(f"{where}.event: the name of the event it becomes (1 to {MAX_ID} characters),"
                          f" e.g. \"card_expiring\"")
    trait, user_path, id_path = entry.get("user_trait"), entry.get("user_path"), entry.get("user_id_path")
    if id_path is not None:
        if trait is not None or user_path is not None:
            raise ConfigError(f"{where}.user_id_path: use either user_id_path (the payload holds the user id)"
                              f" or user_trait + user_path (look the user up by a trait), not both")
        rule_user: dict[str, Any] = {"user_id_path": _path(id_path, f"{where}.user_id_path")}
    else:
        if trait is None:
            raise ConfigError(f"{where}.user_trait: say how to find the user: user_trait + user_path"
                              f" (e.g. \"stripe_customer_id\" + \"data.object.customer\") or user_id_path")
        if not isinstance(trait, str) or not TRAIT_NAME.match(trait):
            raise ConfigError(f"{where}.user_trait: a trait name of letters, digits and _ (not starting with a"
                              f" digit, at most 64), got {trait!r}")
        if user_path is None:
            raise ConfigError(f"{where}.user_path: required with user_trait: the payload field holding the"
                              f" trait's value, e.g. \"data.object.customer\"")
        rule_user = {"user_trait": trait, "user_path": _path(user_path, f"{where}.user_path")}
    props_raw = entry.get("properties", {})
    if not isinstance(props_raw, Mapping):
        raise ConfigError(f"{where}.properties: a table of name = \"dotted.path\","
                          f" e.g. {{ last4 = \"data.object.last4\" }}")
    props: dict[str, Path] = {}
    for name, path in props_raw.items():
        if name in RESERVED_PROPERTIES:
            raise ConfigError(f"{where}.properties.{name}: this name is set by retenshun; pick another")
        props[name] = _path(path, f"{where}.properties.{name}")
    return MapRule(type=type_, event=event, properties=props, **rule_user)


# -- signatures -----------------------------------------------------------------


def verify(source: Source, headers: Mapping[str, str], body: bytes, now_ms: int,
           tolerance_ms: int = TOLERANCE_MS) -> str | None:
    """Check the raw body's signature; raise SignatureError. Returns the event id
    when the headers carry it (Standard Webhooks), else None (Stripe: in the payload)."""
    if source.kind == "stripe":
        verify_stripe(headers.get("stripe-signature"), body, source.key, now_ms, tolerance_ms)
        return None
    # svix-* are the same headers under the name of the service that started the spec.
    msg_id = headers.get("webhook-id") or headers.get("svix-id")
    timestamp = headers.get("webhook-timestamp") or headers.get("svix-timestamp")
    signature = headers.get("webhook-signature") or headers.get("svix-signature")
    verify_standard(msg_id, timestamp, signature, body, source.key, now_ms, tolerance_ms)
    assert msg_id is not None
    return msg_id


def verify_stripe(header: str | None, body: bytes, key: bytes, now_ms: int,
                  tolerance_ms: int = TOLERANCE_MS) -> None:
    if not header:
        raise SignatureError("missing_signature", "Stripe-Signature header is missing")
    timestamp: str | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "t" and timestamp is None:
            timestamp = value
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not timestamp.isdigit() or len(timestamp) > 12 or not candidates:
        raise SignatureError("invalid_signature", "Stripe-Signature: expected t=<unix time>,v1=<hex HMAC>")
    expected = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest().encode()
    _match(expected, candidates, "Stripe-Signature")
    _fresh(int(timestamp), now_ms, tolerance_ms, "Stripe-Signature t")


def verify_standard(msg_id: str | None, timestamp: str | None, signature: str | None, body: bytes, key: bytes,
                    now_ms: int, tolerance_ms: int = TOLERANCE_MS) -> None:
    if not msg_id or not timestamp or not signature:
        raise SignatureError("missing_signature",
                             "send the webhook-id, webhook-timestamp and webhook-signature headers")
    if len(msg_id) > MAX_ID:
        raise SignatureError("invalid_signature", f"webhook-id: at most {MAX_ID} characters")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("invalid_signature", "webhook-timestamp: expected whole Unix seconds")
    candidates = [sig for version, _, sig in (part.partition(",") for part in signature.split()) if version == "v1"]
    if not candidates:
        raise SignatureError("invalid_signature", "webhook-signature: expected \"v1,<base64 HMAC>\" (space-separated)")
    mac = hmac.new(key, msg_id.encode() + b"." + timestamp.encode() + b"." + body, hashlib.sha256).digest()
    _match(base64.b64encode(mac), candidates, "webhook-signature")
    _fresh(int(timestamp), now_ms, tolerance_ms, "webhook-timestamp")


def _match(expected: bytes, candidates: list[str], header: str) -> None:
    # Constant time per comparison; any of the listed signatures may match
    # (providers list several while a secret is being rotated).
    if not any(hmac.compare_digest(expected, c.encode()) for c in candidates):
        raise SignatureError("invalid_signature",
                             f"{header}: no signature matches the body; check the source's secret in the config")


def _fresh(timestamp_s: int, now_ms: int, tolerance_ms: int, field: str) -> None:
    skew_ms = abs(now_ms - timestamp_s * 1000)
    if skew_ms > tolerance_ms:
        raise SignatureError("stale_signature",
                             f"{field}: {skew_ms // 1000} s away from our clock (tolerance {tolerance_ms // 1000} s);"
                             f" an old webhook replayed, or a wrong clock")


# -- payload -> event -------------------------------------------------------------

_object_decoder = msgspec.json.Decoder(dict[str, Any])
_MISSING = object()


def decode_payload(body: bytes) -> dict[str, Any]:
    """The verified body as a JSON object, or a 400."""
    try:
        value: dict[str, Any] = _object_decoder.decode(body)
    except DECODE_ERRORS as exc:
        raise ApiError(400, "invalid_json", f"body: expected a JSON object ({json_error(exc).message})") from None
    check_depth(body, value)
    return value


def event_id(source: Source, payload: Mapping[str, Any], header_id: str | None) -> str:
    """The provider's id of this event: the dedupe key."""
    if header_id is not None:
        return header_id
    value = payload.get("id")
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise ApiError(400, "invalid_field", f"id: a Stripe event carries its id (\"evt_...\"), 1 to {MAX_ID} characters")
    return value


def get_path(payload: Any, path: Path) -> Any:
    """The value at a dotted path, or _MISSING."""
    current = payload
    for part in path:
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current


def _lookup_value(value: Any) -> str | int | None:
    # An expanded Stripe object ({"id": "cus_..."}) stands for its id.
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        value = value["id"]
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and 0 < len(value) <= MAX_ID:
        return value
    if isinstance(value, int):
        return value
    return None


def map_payload(source: Source, event_id: str, payload: Mapping[str, Any]) -> Mapped | Ignored:
    """Which event a verified payload becomes, for whom (or why it is ignored)."""
    type_ = payload.get("type")
    if not isinstance(type_, str) or not type_:
        return Ignored(source=source.name, event_id=event_id, type=None, reason="payload has no \"type\"")
    rule = source.maps.get(type_)
    if rule is None:
        return Ignored(source=source.name, event_id=event_id, type=type_, reason=f"no map for type {type_}")
    props: dict[str, Any] = {}
    for name, path in rule.properties.items():
        value = get_path(payload, path)
        # Missing fields become null so the event always has the same shape.
        props[name] = None if value is _MISSING else value
    props["webhook_source"] = source.name
    props["webhook_event_id"] = event_id
    mapped = Mapped(source=source.name, event_id=event_id, type=type_, event=rule.event, properties=props)
    if rule.user_id_path is not None:
        value = _lookup_value(get_path(payload, rule.user_id_path))
        if value is None:
            mapped.problem = f"{'.'.join(rule.user_id_path)} is missing or not a user id"
        else:
            mapped.user_id = str(value)
        return mapped
    assert rule.user_trait is not None and rule.user_path is not None
    mapped.user_trait = rule.user_trait
    mapped.lookup_value = _lookup_value(get_path(payload, rule.user_path))
    if mapped.lookup_value is None:
        mapped.problem = f"{'.'.join(rule.user_path)} is missing or not a string or number"
    return mapped
