"""The automation engine: who enters which automation, and each run's steps.

Runs live in the store; this object only keeps an index of definitions so an
event costs a dictionary lookup when nothing listens to it. Every step goes
through ``store.apply_transition``: the (run, step) key is claimed in the same
transaction as the step's effects, so a step executes once across crashes and
re-processing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from ..analytics.lift import holdout_assign
from ..clock import Clock, iso
from ..messages import new_message_id
from ..store.base import JournalEntry, NewMessage, Run, StoredEvent, Transition
from .conditions import match_where
from .definitions import Automation, Step, compile_automation
from .quiet_hours import release_time, zone
from .timers import Timers, parse_cron

log = logging.getLogger("retenshund.automations")

# "Not read yet" (a profile may legitimately be None: the user has none).
_UNREAD: Any = object()

# Past the last step: the run has nothing left to do but end (after a final wait).
END: list[Any] = ["end"]


def event_view(e: StoredEvent) -> dict[str, Any]:
    """What trigger ``where`` paths and templates see of an event."""
    d = e.data
    return {"event": e.event, "type": e.type, "properties": d.get("properties") or {},
            "context": d.get("context") or {}, "traits": d.get("traits") or {}, "user_id": e.profile_user_id,
            "group_id": d.get("groupId")}


def run_id_for(automation_id: str, user_id: str, trigger_key: str) -> str:
    digest = hashlib.sha256(f"{automation_id}\0{user_id}\0{trigger_key}".encode()).hexdigest()
    return "run_" + digest[:24]


def _next_position(automation: Automation, path: list[Any]) -> list[Any] | None:
    """The position after the step at ``path``, climbing out of finished branches."""
    cur = list(path)
    while cur:
        cur[-1] += 1
        if automation.step_at(tuple(cur)) is not None:
            return cur
        if len(cur) < 3:
            return None
        cur = cur[:-2]  # leave the branch; continue after the step that owns it
    return None


class AutomationEngine:
    def __init__(self, store: Any, clock: Clock, timers: Timers, dispatcher: Any, segments: Any = None, *,
                 fatigue: tuple[int, int] | None = None, webhook_secret: bytes = b"",
                 allow_private_webhooks: bool = False) -> None:
        self.store = store
        self.clock = clock
        self.timers = timers
        self.dispatcher = dispatcher
        self.segments = segments
        self.fatigue = fatigue
        self.webhook_secret = webhook_secret
        self.allow_private_webhooks = allow_private_webhooks
        self._current: dict[str, Automation] = {}
        self._version_of: dict[str, int] = {}
        self._versions: dict[tuple[str, int], Automation] = {}
        self._by_event: dict[str, list[Automation]] = defaultdict(list)
        self._by_segment: dict[tuple[str, str], list[Automation]] = defaultdict(list)
        self._exits: dict[str, list[Automation]] = defaultdict(list)
        self._goals: dict[str, list[Automation]] = defaultdict(list)
        self._waited: set[str] = set()
        # A user's runs move one at a time (events, timers and cron share the
        # lock); different users' runs move concurrently, so their steps share
        # group commits.
        self._locks: dict[str, list[Any]] = {}

    # -- definitions ---------------------------------------------------------

    async def start(self) -> None:
        for automation_id, definition, version, _enabled, _c, _u in await self.store.list_automations():
            try:
                self._install(compile_automation(automation_id, definition), version)
            except Exception:
                log.exception("stored automation no longer compiles", extra={"automation_id": automation_id})
        self._waited = await self.store.waited_events()
        self.timers.register("runs", self.run_due)

    @contextlib.asynccontextmanager
    async def _user(self, user_id: str) -> AsyncIterator[None]:
        entry = self._locks.get(user_id)
        if entry is None:
            entry = self._locks[user_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[user_id]

    async def _each(self, items: list[Any], fn: Any, width: int = 256) -> None:
        """``fn(item)`` for every item, ``width`` at a time."""
        if len(items) == 1:
            await fn(items[0])  # the common case: no task to create and gather
            return
        for i in range(0, len(items), width):
            await asyncio.gather(*(fn(item) for item in items[i:i + width]))

    async def recover(self) -> int:
        """Go on with runs a previous process left between two steps (it died after
        one step committed and before the next). Each step's key makes this safe."""
        runs = await self.store.active_runs(100_000)

        async def go(run: Run) -> None:
            async with self._user(run.user_id):
                await self._advance(run)

        await self._each(runs, go)
        return len(runs)

    def _install(self, a: Automation, version: int) -> None:
        self._uninstall(a.automation_id)
        self._current[a.automation_id] = a
        self._version_of[a.automation_id] = version
        self._versions[(a.automation_id, version)] = a
        if a.enabled:
            t = a.trigger
            if t.kind == "event" and t.event:
                self._by_event[t.event].append(a)
            elif t.kind in ("segment_entered", "segment_exited") and t.segment:
                self._by_segment[(t.kind, t.segment)].append(a)
            elif t.kind == "schedule" and t.cron and t.segment:
                self.timers.add_cron(a.automation_id, parse_cron(t.cron, "trigger.schedule", t.timezone),
                                     lambda aid=a.automation_id: self.run_schedule(aid))
        for name in a.exit_on:
            self._exits[name].append(a)
        if a.goal_event:
            self._goals[a.goal_event].append(a)
        self._tell_store()

    def _uninstall(self, automation_id: str) -> None:
        for index in (self._by_event, self._by_segment, self._exits, self._goals):
            for key in list(index):
                index[key] = [a for a in index[key] if a.automation_id != automation_id]
                if not index[key]:
                    del index[key]
        self._current.pop(automation_id, None)
        self.timers.remove_cron(automation_id)
        self._tell_store()

    def _tell_store(self) -> None:
        # Events that trigger something come with their sender's profile, read in
        # the transaction that stores them: entering needs no read of its own.
        self.store.profile_events = frozenset(self._by_event)

    def installed(self, automation: Automation, version: int) -> None:
        """Called after the API saved a new version."""
        self._install(automation, version)

    def removed(self, automation_id: str) -> None:
        self._uninstall(automation_id)

    async def _version(self, automation_id: str, version: int) -> Automation | None:
        """The definition a run started with (editing never changes runs in flight)."""
        key = (automation_id, version)
        if key not in self._versions:
            definition = await self.store.automation_version(automation_id, version)
            if definition is None:
                return None
            self._versions[key] = compile_automation(automation_id, definition)
        return self._versions[key]

    # -- events --------------------------------------------------------------

    async def on_events(self, events: list[StoredEvent]) -> None:
        """Each user's events in order; different users at the same time (their
        steps then share group commits instead of queueing one by one)."""
        by_user: dict[str, list[tuple[StoredEvent, list[Automation]]]] = {}
        acting: set[str] = set()
        for e in events:
            user_id = e.profile_user_id
            if user_id is None or e.type != "track" or not e.event:
                continue
            name = e.event
            effects = name in self._exits or name in self._goals or name in self._waited
            if not (effects or name in self._by_event or name in ("segment_entered", "segment_exited")):
                continue
            # `where` filters depend on the event alone: checked once, here.
            matched = self._matched(e, name)
            by_user.setdefault(user_id, []).append((e, matched))
            if effects or matched:
                acting.add(user_id)

        async def user_events(evs: list[tuple[StoredEvent, list[Automation]]]) -> None:
            for e, matched in evs:
                await self._on_event(e, matched)

        # Most events of a busy app trigger nothing: a user none of whose events
        # here can act (no trigger that matches, no exit, goal or wait on its
        # name) needs no task and no lock. All of a user's events stay together
        # otherwise: an earlier one may start a run that a later one resumes.
        await self._each([evs for user_id, evs in by_user.items() if user_id in acting], user_events)

    def _matched(self, e: StoredEvent, name: str) -> list[Automation]:
        """The automations this event triggers (name, segment, `where`)."""
        triggered: list[Automation] = self._by_event.get(name, [])
        if name in ("segment_entered", "segment_exited"):
            segment = (e.data.get("properties") or {}).get("segment_id")
            triggered = [*triggered, *self._by_segment.get((name, segment), [])]
        if not triggered:
            return []
        view = event_view(e)
        return [a for a in triggered if a.trigger.where is None or match_where(a.trigger.where, view)]

    async def _on_event(self, e: StoredEvent, matched: list[Automation]) -> None:
        user_id = e.profile_user_id
        assert user_id is not None and e.event is not None
        name = e.event
        if name in self._exits or name in self._goals or name in self._waited:
            async with self._user(user_id):
                await self._actor_effects(e, name, user_id)
        await self._triggers(e, user_id, matched)

    async def _actor_effects(self, e: StoredEvent, name: str, user_id: str) -> None:
        """What the event does to the actor's own runs: exits, goals, waits."""
        now = self.clock.now_ms()
        for a in self._exits.get(name, []):
            for run in await self.store.live_runs(e.pid, a.automation_id):
                await self.store.exit_run(run, now, [JournalEntry(
                    user_id=user_id, kind="exited", at=now, automation_id=a.automation_id, run_id=run.run_id,
                    detail=f"exit event {name}")], f"cancelled: run exited on {name}")
        for a in self._goals.get(name, []):
            await self.store.record_goal(e.pid, a.automation_id, e.timestamp, a.goal_within_ms, JournalEntry(
                user_id=user_id, kind="goal_reached", at=now, automation_id=a.automation_id,
                detail=f"goal {name} reached"))
        if name in self._waited:
            for run in await self.store.runs_waiting_for(e.pid, name):
                await self._resume_wait_for(run, happened=True, event=e)

    async def _triggers(self, e: StoredEvent, user_id: str, matched: list[Automation]) -> None:
        view = event_view(e)
        for a in matched:
            t = a.trigger
            targets = [user_id]
            if t.group_path:
                group_id = _path(view, t.group_path)
                if group_id is None:
                    continue
                members = await self.store.group_member_ids(str(group_id))
                targets = [m for m in members if t.include_actor or m != user_id]
            async def enter(target: str, a: Automation = a) -> None:
                async with self._user(target):
                    await self._enter(a, target, e.message_id, view["properties"], e.received_at,
                                      e.profile if target == user_id and e.profile is not None else _UNREAD)

            await self._each(targets, enter)

    # -- entering ------------------------------------------------------------

    async def _enter(self, a: Automation, user_id: str, trigger_key: str, event_props: dict[str, Any] | None,
                     trigger_at: int, profile: Any = _UNREAD) -> None:
        """``profile``: the user's, when the caller has it (read with the event)."""
        now = self.clock.now_ms()
        version = await self._current_version(a.automation_id)
        held = a.holdout_percent > 0 and holdout_assign(a.automation_id, user_id, a.holdout_percent)
        run = Run(run_id=run_id_for(a.automation_id, user_id, trigger_key), automation_id=a.automation_id,
                  version=version, pid=0, user_id=user_id, status="held_out" if held else "active", holdout=held,
                  trigger_event={"properties": event_props or {}}, trigger_at=trigger_at,
                  position=[0] if a.steps else [], wait_until=None, waiting_for=None, goal_at=None,
                  started_at=now, updated_at=now, ended_at=now if held else None)
        entry = JournalEntry(user_id=user_id, kind="held_out" if held else "entered", at=now,
                             automation_id=a.automation_id, run_id=run.run_id,
                             detail=(f"in the {a.holdout_percent:g}% holdout: sends nothing, counts for lift"
                                     if held else f"triggered by {trigger_key}"))
        skipped = JournalEntry(user_id=user_id, kind="skipped_frequency_cap", at=now, automation_id=a.automation_id,
                               detail=f"frequency cap: at most {a.cap_max} entries per {a.cap_per_ms // 1000}s")
        cap = (a.cap_max, a.cap_per_ms) if a.cap_max else None
        # The first step is planned now and applied in the transaction that
        # creates the run: one commit less between the event and the message.
        first = a.step_at(tuple(run.position)) if run.position and not held else None
        if first is not None and first.kind == "webhook":
            first = None  # a call goes out when planned: only once the run surely exists
        plan = None
        if first is not None:
            # Planning may read the user's own data (caps, computed variables).
            if profile is _UNREAD:
                profile = await self.store.profile_for_send(user_id)
            run = msgspec.structs.replace(run, pid=profile.pid if profile else 0)
            plan = await self._plan(run, a, first, profile)
        started = await self.store.start_run(run, cap=cap, journal=[entry], skipped=[skipped], first=plan)
        if started is None or held:
            return
        run_now, made = started
        if plan is not None and made is not None:
            run_now = self._after(run_now, plan, made)
        await self._advance(run_now, a)

    async def _current_version(self, automation_id: str) -> int:
        version = self._version_of.get(automation_id)
        if version is None:
            found = await self.store.get_automation(automation_id)
            version = int(found[1]) if found else 1
        return version

    # -- running steps ---------------------------------------------------------

    async def _advance(self, run: Run, a: Automation | None = None, *, woke: bool = False) -> None:
        """Execute steps from the run's position until it waits or ends. ``woke``:
        the run's wait is over (it is still marked waiting until its next step
        commits, in the same transaction)."""
        a = a if a is not None and (a.automation_id, run.version) in self._versions else \
            await self._version(run.automation_id, run.version)
        if a is None:
            return
        for _ in range(1000):  # a definition has at most 100 steps per list; this is a safety net
            if run.status != "active" and not (woke and run.status == "waiting"):
                return
            woke = False
            step = a.step_at(tuple(run.position)) if run.position else None
            if step is None:
                await self._finish(run)
                return
            moved = await self._execute(run, a, step)
            if moved is None:
                return
            run = moved

    async def _finish(self, run: Run) -> None:
        now = self.clock.now_ms()
        await self.store.apply_transition(Transition(
            run_id=run.run_id, step_key=f"{_key(run.position)}:end", expect_position=run.position,
            expect_status=run.status, position=run.position, status="completed",
            journal=[JournalEntry(user_id=run.user_id, kind="completed", at=now, automation_id=run.automation_id,
                                  run_id=run.run_id)]), now, self.dispatcher.lease_ms)

    async def _execute(self, run: Run, a: Automation, step: Step) -> Run | None:
        t = await self._plan(run, a, step)
        made = await self.store.apply_transition(t, self.clock.now_ms(), self.dispatcher.lease_ms)
        if made is None:
            return None
        return self._after(run, t, made)

    async def _plan(self, run: Run, a: Automation, step: Step, profile: Any = _UNREAD) -> Transition:
        """What executing ``step`` does, as one transition (not yet applied)."""
        now = self.clock.now_ms()
        key = _key(run.position)
        nxt = _next_position(a, run.position) or END
        journal: list[JournalEntry] = []
        messages: list[NewMessage] = []
        status, position, wait_until, waiting_for = "active", nxt, None, None
        if step.kind == "wait":
            status, wait_until = "waiting", now + step.duration_ms
            journal.append(self._note(run, "waiting", now, f"until {iso(wait_until)}"))
        elif step.kind == "wait_for":
            status, position, wait_until, waiting_for = "waiting", run.position, now + step.duration_ms, step.event
            journal.append(self._note(run, "waiting_for", now, f"{step.event} until {iso(wait_until)}"))
        elif step.kind == "if":
            assert step.condition_source is not None
            ok = await self._condition(run, step.condition_source)
            branch = "then" if ok else "else"
            journal.append(self._note(run, "branch", now, f"condition {'true' if ok else 'false'}: {branch}"))
            if a.step_at((*run.position, branch, 0)) is not None:
                position = [*run.position, branch, 0]
        elif step.kind == "send":
            if profile is _UNREAD and (a.quiet_start is not None or "in_app" in step.channel):
                profile = await self.store.profile_for_send(run.user_id)
            messages, notes = await self._messages(run, a, step, now, profile)
            journal += notes
            if any(n.channel == "in_app" and n.status == "queued" and n.due_at <= now for n in messages):
                await self.dispatcher.inline(messages, profile)
        elif step.kind == "webhook":
            journal.append(await self._webhook(run, step, key))
        if status == "active" and position == END:
            status = "completed"
            journal.append(self._note(run, "completed", now, None))
        return Transition(run_id=run.run_id, step_key=key, expect_position=run.position, expect_status=run.status,
                          position=position, status=status, wait_until=wait_until, waiting_for=waiting_for,
                          messages=messages, journal=journal, outcome=step.kind)

    def _after(self, run: Run, t: Transition, made: list[Any]) -> Run:
        """Effects of a committed step: frames, hand-over to the dispatcher, timers."""
        now = self.clock.now_ms()
        if made:
            self.dispatcher.delivered_inline(made)
            # Only what is due now is handed over; deferred ones (quiet hours,
            # fallbacks) wait in the outbox for the dispatcher to claim them.
            self.dispatcher.submit([m for m, n in zip(made, t.messages) if n.due_at <= now and m.inbox is None])
            if any(n.due_at > now for n in t.messages):
                self.dispatcher.poke()
        if t.waiting_for:
            self._waited.add(t.waiting_for)
        if t.wait_until is not None:
            self.timers.wake_at("runs", t.wait_until)
        return msgspec.structs.replace(run, position=t.position, status=t.status, wait_until=t.wait_until,
                                       waiting_for=t.waiting_for)

    def _note(self, run: Run, kind: str, at: int, detail: str | None) -> JournalEntry:
        return JournalEntry(user_id=run.user_id, kind=kind, at=at, automation_id=run.automation_id,
                            run_id=run.run_id, detail=detail)

    async def _condition(self, run: Run, condition: dict[str, Any]) -> bool:
        if self.segments is None:
            return False
        return bool(await self.segments.evaluate(run.pid, run.user_id, condition))

    async def _messages(self, run: Run, a: Automation, step: Step, now: int,
                        profile: Any = None) -> tuple[list[NewMessage], list[JournalEntry]]:
        notes: list[JournalEntry] = []
        due = now
        if a.quiet_start is not None and a.quiet_end is not None:
            # The user's own time zone: only read when quiet hours apply.
            traits = profile.traits if profile else {}
            tz = zone(traits.get("timezone"), a.quiet_timezone)
            release = release_time(now, a.quiet_start, a.quiet_end, tz)
            if release is not None:
                due = release
                notes.append(self._note(run, "deferred_quiet_hours", now,
                                        f"quiet hours in {tz.key}: sends at {iso(release)}"))
        status, reason = "queued", None
        templates = getattr(self.dispatcher, "templates", None)
        category = step.category
        if category is None and templates is not None:
            compiled = await templates.get(step.template_id or "")
            category = compiled.category if compiled else None
        if self.fatigue is not None and category != "transactional":
            limit, per = self.fatigue
            if await self.store.recent_automation_messages(run.pid, now - per) >= limit:
                status, reason = "suppressed", f"frequency cap: at most {limit} automated messages per {per // 1000}s"
                notes.append(self._note(run, "suppressed_fatigue", now, reason))
        event = (run.trigger_event or {}).get("properties") or {}
        variables = dict(step.variables)
        for c in step.computed:
            variables[c.name] = await self._compute(run.pid, c, now)
        made: list[NewMessage] = []
        for channel in step.channel:
            cat = category
            made.append(NewMessage(message_id=new_message_id(), user_id=run.user_id, channel=channel,
                                   template_id=step.template_id, category=cat or "transactional",
                                   variables=variables, event=event, automation_id=a.automation_id,
                                   run_id=run.run_id, trigger_at=run.trigger_at, due_at=due, status=status,
                                   reason=reason))
        if step.fallback is not None and made and status == "queued":
            fb = step.fallback
            compiled = await templates.get(fb.template_id) if templates is not None else None
            made.append(NewMessage(message_id=new_message_id(), user_id=run.user_id, channel=fb.channel,
                                   template_id=fb.template_id,
                                   category=compiled.category if compiled else "transactional",
                                   variables=variables, event=event, automation_id=a.automation_id,
                                   run_id=run.run_id, trigger_at=run.trigger_at, due_at=due + fb.after_ms,
                                   fallback_of=made[0].message_id))
            notes.append(self._note(run, "fallback_scheduled", now,
                                    f"{fb.channel} at {iso(due + fb.after_ms)} unless the in-app message is read"))
        if status == "queued":
            notes.append(self._note(run, "sent", now, f"{', '.join(step.channel)} with {step.template_id}"))
        return made, notes

    async def _compute(self, pid: int, c: Any, now: int) -> Any:
        since = now - c.within_ms if c.within_ms is not None else 0
        if c.agg == "count":
            return await self.store.count_events(pid, c.event, since)
        if c.agg == "sum":
            return await self.store.sum_property(pid, c.event, since, c.property)
        rows = await self.store.event_properties(pid, c.event, since, 1)  # "last": the newest one
        return rows[0].get(c.property) if rows else None

    async def _webhook(self, run: Run, step: Step, key: str) -> JournalEntry:
        from ..channels.webhook import call_webhook

        now = self.clock.now_ms()
        body = {"automation_id": run.automation_id, "run_id": run.run_id, "user_id": run.user_id,
                "event": (run.trigger_event or {}).get("properties"), "data": step.body}
        assert step.url is not None
        result = await call_webhook(step.url, body, secret=self.webhook_secret, webhook_id=f"{run.run_id}:{key}",
                                    headers=step.headers, allow_private=self.allow_private_webhooks,
                                    now=now / 1000)
        return self._note(run, "webhook" if result.ok else "webhook_failed", now, f"{step.url}: {result.detail}")

    async def _resume_wait_for(self, run: Run, *, happened: bool, event: StoredEvent | None = None) -> None:
        a = await self._version(run.automation_id, run.version)
        if a is None:
            return
        step = a.step_at(tuple(run.position))
        if step is None or step.kind != "wait_for":
            return
        if happened and event is not None and step.where is not None and not match_where(step.where,
                                                                                         event_view(event)):
            return
        now = self.clock.now_ms()
        branch = "if_happened" if happened else "if_not"
        position = [*run.position, branch, 0]
        if a.step_at(tuple(position)) is None:
            position = _next_position(a, run.position) or END
        done = position == END
        moved = await self.store.apply_transition(Transition(
            run_id=run.run_id, step_key=f"{_key(run.position)}:resolved", expect_position=run.position,
            expect_status=run.status, position=position, status="completed" if done else "active",
            journal=[self._note(run, "wait_for_" + ("happened" if happened else "timed_out"), now, step.event)]),
            now, self.dispatcher.lease_ms)
        if moved is not None and not done:
            await self._advance(msgspec.structs.replace(run, position=position, status="active", wait_until=None,
                                                        waiting_for=None), a)

    # -- time ----------------------------------------------------------------

    async def run_due(self, now_ms: int) -> int | None:
        """Timer handler: waits that are over, and wait_for timeouts, many users at once."""
        seen: set[str] = set()
        while True:
            due = [r for r in await self.store.due_runs(now_ms, 1000) if r.run_id not in seen]
            if not due:
                break
            seen.update(r.run_id for r in due)
            await self._each(due, self._wake)
        return await self.store.next_run_wake()

    async def _wake(self, run: Run) -> None:
        async with self._user(run.user_id):
            if run.waiting_for:
                await self._resume_wait_for(run, happened=False)
                return
            a = await self._version(run.automation_id, run.version)
            if a is not None:
                await self._advance(run, a, woke=True)

    async def run_schedule(self, automation_id: str) -> None:
        """A cron trigger fired: every current member of the segment enters."""
        a = self._current.get(automation_id)
        if a is None or not a.enabled or self.segments is None or a.trigger.segment is None:
            return
        fired = self.clock.now_ms()
        members = await self.segments.member_user_ids(a.trigger.segment)

        async def enter(user_id: str) -> None:
            async with self._user(user_id):
                await self._enter(a, user_id, f"schedule:{fired // 60_000}", None, fired)

        await self._each(members, enter)


def _key(position: list[Any]) -> str:
    return ".".join(str(p) for p in position) or "start"


def _path(view: dict[str, Any], dotted: str) -> Any:
    cur: Any = view
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur
