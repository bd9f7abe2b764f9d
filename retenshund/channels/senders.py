"""The email and web push senders: from a rendered message and the user's
profile to the wire, and from the wire's answer to a Delivery."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .. import tracking
from ..dispatch import Delivery, backoff
from ..store.base import Job, Message, Profile
from ..vapid import VapidKeys
from .email import EmailSettings, SmtpPool, build_email_async, email_retry_delay
from .webpush import push_payload, send_webpush

log = logging.getLogger("retenshund.channels")


class EmailSender:
    channel = "email"
    external = True

    def __init__(self, settings: EmailSettings, pool: SmtpPool, store: Any, *, signing_secret: str,
                 public_url: str, track_opens: bool = True, track_clicks: bool = True,
                 give_up_after_s: float = 5 * 86400) -> None:
        self.settings = settings
        self.pool = pool
        self.store = store
        self.secret = signing_secret
        self.public_url = public_url.rstrip("/")
        self.track_opens = track_opens
        self.track_clicks = track_clicks
        self.give_up_after_s = give_up_after_s

    async def deliver(self, message: Message, content: dict[str, Any], profile: Profile | None,
                      job: Job) -> Delivery:
        address = (profile.traits.get("email") if profile else None) or ""
        if not isinstance(address, str) or "@" not in address:
            return Delivery(status="suppressed", detail="no address: the user has no email trait")
        why = await self.store.address_suppressed(address)
        if why:
            return Delivery(status="suppressed", detail=f"address suppressed: {why}")
        html = content.get("html") or ""
        if html and (self.track_opens or self.track_clicks):
            html = tracking.instrument_html(html, base_url=self.public_url, secret=self.secret,
                                            message_id=message.message_id, track_opens=self.track_opens,
                                            track_clicks=self.track_clicks)
        unsubscribe = tracking.unsubscribe_url(self.public_url, self.secret, message.message_id, message.user_id)
        try:
            email = await build_email_async(
                settings=self.settings, to=address, subject=content.get("subject") or "", html=html,
                text=content.get("text") or "", message_id=message.message_id, unsubscribe_url=unsubscribe,
                to_name=(profile.traits.get("name") if profile else None) or None)
        except ValueError as exc:
            return Delivery(status="failed", detail=f"email not sendable: {exc}")
        result = await self.pool.send(email)
        if result.outcome == "sent":
            return Delivery(status="sent", detail=result.detail)
        if result.outcome == "bounced":
            await self.store.suppress_address(address, f"bounced: {result.detail}", message.updated_at)
            return Delivery(status="bounced", detail=result.detail)
        if result.outcome == "retry":
            return Delivery(status="retry", detail=result.detail)
        return Delivery(status="failed", detail=result.detail)

    def committed(self, message: Message, delivery: Delivery, unread: int | None) -> None:
        pass

    def retry_delay(self, failures: int, elapsed_s: float, delivery: Delivery) -> float | None:
        return email_retry_delay(failures, elapsed_s=elapsed_s, give_up_after_s=self.give_up_after_s)


class PushSender:
    channel = "push"
    external = True

    def __init__(self, keys: VapidKeys, subject: str, store: Any, *, session: Any = None, ttl: int = 86400,
                 urgency: str = "normal") -> None:
        self.keys = keys
        self.subject = subject
        self.store = store
        self.session = session
        self.ttl = ttl
        self.urgency = urgency

    async def deliver(self, message: Message, content: dict[str, Any], profile: Profile | None,
                      job: Job) -> Delivery:
        subs = await self.store.push_subscriptions(message.user_id)
        if not subs:
            return Delivery(status="suppressed", detail="no address: the user has no push subscription")
        payload = push_payload(content.get("title") or "", content.get("body"), content.get("url"),
                               content.get("icon"), message.message_id)
        results = await asyncio.gather(*(
            send_webpush({"endpoint": s.endpoint, "keys": {"p256dh": s.p256dh, "auth": s.auth}}, payload,
                         self.keys, self.subject, ttl=self.ttl, urgency=self.urgency, session=self.session)
            for s in subs))
        gone = [sub.endpoint for sub, result in zip(subs, results) if result.outcome == "gone"]
        outcomes = [r.outcome for r in results]
        details = "; ".join(f"{r.outcome} ({r.status_code})" for r in results)
        if "delivered" in outcomes:
            return Delivery(status="delivered", detail=f"{outcomes.count('delivered')} of {len(subs)} devices",
                            gone_endpoints=gone)
        if "retry" in outcomes:
            if gone:
                # Not recorded by a completion yet: drop the dead ones now.
                for endpoint in gone:
                    await self.store.delete_push_subscription(endpoint)
            waits = [r.retry_after_s for r in results if r.outcome == "retry" and r.retry_after_s]
            return Delivery(status="retry", detail=details, retry_after_s=max(waits) if waits else None)
        if all(o == "gone" for o in outcomes):
            return Delivery(status="suppressed", detail="no address: every push subscription has expired",
                            gone_endpoints=gone)
        if "vapid_error" in outcomes:
            log.error("push service refused our VAPID signature: check [push] subject and the VAPID keys",
                      extra={"message_id": message.message_id})
        return Delivery(status="failed", detail=details, gone_endpoints=gone)

    def committed(self, message: Message, delivery: Delivery, unread: int | None) -> None:
        pass

    def retry_delay(self, failures: int, elapsed_s: float, delivery: Delivery) -> float | None:
        return backoff(failures, base_s=30.0, cap_s=3600.0, max_failures=10)
