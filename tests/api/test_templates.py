"""Templates over HTTP: save with validation, read, list, delete, preview."""

from __future__ import annotations

from tests.conftest import PUBLISHABLE, Api
from tests.messaging_helpers import TEMPLATE, put_template, setup_user


async def test_put_get_list_delete(api: Api) -> None:
    r = await api.put("/v1/templates/milestone", TEMPLATE)
    assert r.status_code == 201 and r.json()["version"] == 1
    r = await api.put("/v1/templates/milestone", {**TEMPLATE, "name": "Milestone 2"})
    assert r.status_code == 200 and r.json()["version"] == 2
    got = (await api.get("/v1/templates/milestone")).json()
    assert got["name"] == "Milestone 2" and got["category"] == "product_updates"
    # What GET returns can be PUT back unchanged.
    assert (await api.put("/v1/templates/milestone", got)).json()["version"] == 3
    assert [t["template_id"] for t in (await api.get("/v1/templates")).json()["templates"]] == ["milestone"]
    assert (await api.delete("/v1/templates/milestone")).status_code == 204
    assert (await api.get("/v1/templates/milestone")).status_code == 404


async def test_syntax_errors_are_400_with_field_and_line(api: Api) -> None:
    r = await api.put("/v1/templates/bad", {"email": {"subject": "ok", "html": "<p>\n{% if x %}\nnever closed"}})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "template_error"
    assert err["message"].startswith("email.html: line 2")


async def test_unknown_filter_is_refused_at_save_time(api: Api) -> None:
    r = await api.put("/v1/templates/bad", {"push": {"title": "{{ name | shout }}"}})
    assert r.status_code == 400 and "push.title" in r.json()["error"]["message"]


async def test_category_defaults_to_transactional(api: Api) -> None:
    r = await api.put("/v1/templates/t", {"in_app": {"title": "x"}})
    assert r.json()["category"] == "transactional"


async def test_bad_template_ids_and_bodies(api: Api) -> None:
    assert (await api.put("/v1/templates/has space", TEMPLATE)).status_code in (400, 404)
    assert (await api.put("/v1/templates/t", {"sms": {"body": "x"}})).status_code == 400
    assert (await api.put("/v1/templates/t", [1, 2])).status_code == 400
    assert (await api.put("/v1/templates/t", TEMPLATE, key=PUBLISHABLE)).status_code == 403


async def test_preview_renders_with_the_users_data(api: Api) -> None:
    await setup_user(api, "u1", name="Ada")
    await put_template(api)
    r = await api.post("/v1/templates/milestone/preview",
                       {"user_id": "u1", "channel": "email", "variables": {"milestone": "10,000 messages"}})
    assert r.status_code == 200, r.text
    rendered = r.json()["rendered"]
    assert rendered["subject"] == "You reached 10,000 messages"
    assert "Hi Ada" in rendered["html"] and "Hi Ada" in rendered["text"]
    r = await api.post("/v1/templates/milestone/preview", {"channel": "in_app", "variables": {"milestone": "5"}})
    assert r.json()["rendered"]["data"] == {"kind": "milestone", "value": "5"}


async def test_preview_errors(api: Api) -> None:
    await put_template(api, "only_push", {"push": {"title": "x"}})
    r = await api.post("/v1/templates/only_push/preview", {"channel": "email"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_channel_content"
    assert (await api.post("/v1/templates/nope/preview", {"channel": "email"})).status_code == 404
    assert (await api.post("/v1/templates/only_push/preview", {"channel": "sms"})).status_code == 400
