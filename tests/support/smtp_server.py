"""A real SMTP server for tests: aiosmtpd's threaded ``Controller`` on 127.0.0.1.

    async with SmtpTestServer() as server:
        ...send to server.host / server.port...
        await server.wait_for(1)
        assert server.messages[0].message["Subject"] == "Hi"

- ``server.messages``: what was accepted (parsed :class:`EmailMessage`, raw
  bytes, envelope sender and recipients).
- ``server.answer(code, text=None, times=1, at="DATA")``: the next ``times``
  commands of that kind (``MAIL``, ``RCPT`` or ``DATA``) are answered with
  ``code`` instead of the usual 250. A ``421`` also closes the connection, as
  RFC 5321 says it does.
- ``server.connections``: how many SMTP sessions clients opened.
- ``await server.stop()`` / ``await server.start()``: take it down (closing
  every client connection) and bring it back on the same port.

The server runs on its own thread and loop; waiting uses an asyncio
condition on the test's loop, woken from the server thread, with a deadline.
"""

from __future__ import annotations

import asyncio
import collections
import email.policy
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

_DEFAULT_TEXT = {
    250: "2.0.0 OK",
    421: "4.3.2 Service shutting down, closing transmission channel",
    450: "4.2.1 Mailbox busy, try again later",
    451: "4.3.0 Temporary local problem, try again later",
    452: "4.2.2 Mailbox full",
    550: "5.1.1 Mailbox unavailable",
    552: "5.3.4 Message too big",
    553: "5.1.3 Mailbox name not allowed",
    554: "5.7.1 Message rejected",
}


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage


@dataclass
class Refusal:
    at: str
    code: int
    text: str
    address: str | None = None


@dataclass
class _Script:
    at: str
    code: int
    text: str
    remaining: int


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: list[ReceivedMessage] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    scripts: collections.deque[_Script] = field(default_factory=collections.deque)
    connections: int = 0
    sessions: set[SMTP] = field(default_factory=set)


class _Session(SMTP):
    """aiosmtpd's SMTP, counting and remembering its connections."""

    def __init__(self, state: _State, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state = state

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        with self._state.lock:
            self._state.connections += 1
            self._state.sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        with self._state.lock:
            self._state.sessions.discard(self)
        super().connection_lost(error)


class _Handler:
    def __init__(self, owner: "SmtpTestServer") -> None:
        self.owner = owner

    def _scripted(self, at: str) -> _Script | None:
        state = self.owner._state
        with state.lock:
            for script in state.scripts:
                if script.at == at:
                    script.remaining -= 1
                    if script.remaining <= 0:
                        state.scripts.remove(script)
                    return script
        return None

    def _refuse(self, server: SMTP, script: _Script, address: str | None) -> str:
        with self.owner._state.lock:
            self.owner._state.refusals.append(Refusal(script.at, script.code, script.text, address))
        if script.code == 421 and server.transport is not None:
            # After the reply is written (push writes synchronously once we return).
            server.loop.call_soon(server.transport.close)
        self.owner._wake()
        return f"{script.code} {script.text}"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001
        script = self._scripted("MAIL")
        if script is not None and script.code >= 300:
            return self._refuse(server, script, address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        script = self._scripted("RCPT")
        if script is not None and script.code >= 300:
            return self._refuse(server, script, address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        gate = self.owner._gate
        if gate is not None:
            # Hold the message without answering, as a slow server would: the
            # client has sent everything and waits for the 250 that never comes.
            with self.owner._state.lock:
                self.owner._held += 1
            self.owner._wake()
            await gate.wait()
            return "451 4.3.0 discarded while held"
        script = self._scripted("DATA")
        if script is not None and script.code >= 300:
            return self._refuse(server, script, None)
        raw = bytes(envelope.original_content or b"")
        parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
        assert isinstance(parsed, EmailMessage)
        received = ReceivedMessage(str(envelope.mail_from), list(envelope.rcpt_tos), raw, parsed)
        with self.owner._state.lock:
            self.owner._state.messages.append(received)
        self.owner._wake()
        if script is not None:
            return f"{script.code} {script.text}"
        return "250 2.0.0 OK queued"


class _Controller(Controller):
    """Binds port 0 and learns the real port before aiosmtpd's start-up probe."""

    def __init__(self, state: _State, handler: _Handler, port: int) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=port, server_hostname="smtp.test")
        self._state = state

    def factory(self) -> SMTP:
        return _Session(self._state, self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpTestServer:
    host = "127.0.0.1"

    def __init__(self) -> None:
        self._state = _State()
        self._controller: _Controller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cond: asyncio.Condition | None = None
        self.port = 0

    # -- lifecycle --

    async def __aenter__(self) -> "SmtpTestServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._controller is not None:
            await self.stop()

    async def start(self) -> None:
        """Start listening (on the same port as before after a :meth:`stop`)."""
        self._loop = asyncio.get_running_loop()
        if self._cond is None:
            self._cond = asyncio.Condition()
        controller = _Controller(self._state, _Handler(self), self.port)
        await asyncio.to_thread(controller.start)
        # aiosmtpd's start-up probe was a connection too; it is not a client's.
        with self._state.lock:
            self._state.connections -= 1
        self.port = controller.port
        self._controller = controller

    async def stop(self) -> None:
        """Stop listening and drop every open client connection."""
        controller, self._controller = self._controller, None
        assert controller is not None, "not running"

        def stop() -> None:
            self._close_sessions(controller)
            controller.stop()

        await asyncio.to_thread(stop)

    async def drop_connections(self) -> None:
        """Close every open client connection (as an idle timeout would); keep listening."""
        controller = self._controller
        assert controller is not None, "not running"
        await asyncio.to_thread(self._close_sessions, controller)

    def drop_connections_now(self) -> None:
        """Like :meth:`drop_connections`, but blocking the calling (test) loop, so
        the client has not yet seen the close when this returns: its next
        command meets a dead connection."""
        assert self._controller is not None, "not running"
        self._close_sessions(self._controller)

    def _close_sessions(self, controller: _Controller) -> None:
        """On the server's loop: close all session transports; wait until done."""
        done = threading.Event()

        def run() -> None:
            with self._state.lock:
                sessions = list(self._state.sessions)
            for session in sessions:
                if session.transport is not None:
                    session.transport.close()
            done.set()

        controller.loop.call_soon_threadsafe(run)
        if not done.wait(5):
            raise TimeoutError("the SMTP server thread did not answer")

    # -- scripting and inspection --

    _gate: asyncio.Event | None = None
    _held = 0

    def hold(self) -> None:
        """From now on, DATA is received but never answered (until :meth:`release`);
        held messages are discarded, never counted as received."""
        assert self._controller is not None, "not started"
        loop = self._controller.loop
        self._gate = asyncio.Event()
        self._gate_loop = loop

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            self._gate_loop.call_soon_threadsafe(gate.set)

    @property
    def held(self) -> int:
        with self._state.lock:
            return self._held

    async def wait_held(self, n: int = 1, timeout: float = 10) -> None:
        """Until ``n`` DATA commands are being held."""
        assert self._cond is not None, "not started"
        async with asyncio.timeout(timeout):
            async with self._cond:
                await self._cond.wait_for(lambda: self.held >= n)

    def answer(self, code: int, text: str | None = None, *, times: int = 1, at: str = "DATA") -> None:
        """Answer the next ``times`` ``at`` commands (MAIL, RCPT, DATA) with ``code``."""
        at = at.upper()
        if at not in ("MAIL", "RCPT", "DATA"):
            raise ValueError("at must be MAIL, RCPT or DATA")
        with self._state.lock:
            self._state.scripts.append(_Script(at, code, text or _DEFAULT_TEXT.get(code, "scripted"), times))

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._state.lock:
            return list(self._state.messages)

    @property
    def refusals(self) -> list[Refusal]:
        with self._state.lock:
            return list(self._state.refusals)

    @property
    def connections(self) -> int:
        with self._state.lock:
            return self._state.connections

    @property
    def open_connections(self) -> int:
        with self._state.lock:
            return len(self._state.sessions)

    async def wait_for(self, n: int, timeout: float = 5) -> list[ReceivedMessage]:
        """Until at least ``n`` messages were accepted; TimeoutError after ``timeout`` s."""
        assert self._cond is not None, "not started"
        try:
            async with asyncio.timeout(timeout):
                async with self._cond:
                    await self._cond.wait_for(lambda: len(self.messages) >= n)
        except TimeoutError:
            raise TimeoutError(
                f"expected {n} messages within {timeout}s, got {len(self.messages)} "
                f"(refusals: {self.refusals})"
            ) from None
        return self.messages

    def _wake(self) -> None:
        """From the server thread: wake waiters on the test's loop."""
        loop, cond = self._loop, self._cond
        if loop is None or cond is None:
            return

        async def notify() -> None:
            async with cond:
                cond.notify_all()

        try:
            asyncio.run_coroutine_threadsafe(notify(), loop)
        except RuntimeError:
            pass  # the test's loop is gone
