"""The shared log: both systems' change events on a NATS JetStream stream.

``SharedLog`` is a small synchronous adapter over the asyncio ``nats-py`` client (every call
has a bounded timeout): ``publish`` (deduplicated by the event's side and position, so a CDC
reader that replays a transaction publishes nothing twice), and a durable pull consumer
(``fetch(batch, timeout) -> list[ChangeEvent]``, ``ack(events)``) that replays from its last
acknowledged message after a restart. A Kafka adapter would offer the same four methods
(fetch, ack, pending, close). Subjects: ``<subject_prefix>.a`` and ``<subject_prefix>.b``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from recon_pipelines.redact import redact
from recon_pipelines.streams.events import ChangeEvent

_PUBLISH_CHUNK = 512  # publishes awaited together: one round trip per chunk, not per event


class StreamError(RuntimeError):
    """The stream cannot be reached or read; says which."""


@dataclass(frozen=True)
class Pending:
    """Messages the durable consumer has not acknowledged yet (not delivered, or in flight)."""

    not_delivered: int
    unacknowledged: int


class SharedLog:
    def __init__(self, url: str, stream: str, subject_prefix: str, *, durable: str | None = None,
                 ack_wait: float = 30.0, token_env: str | None = None, timeout: float = 10.0):
        self.url, self.stream, self.prefix, self.durable = url, stream, subject_prefix, durable
        self.ack_wait, self.timeout = ack_wait, timeout
        self._token = os.environ.get(token_env) if token_env else None
        if token_env and not self._token:
            raise StreamError(f"change_stream.token_env: environment variable {token_env} is not set")
        self._loop = asyncio.new_event_loop()
        self._nc = self._js = self._sub = None
        self._unacked: dict[str, object] = {}
        self.rejected: list[str] = []  # one line per message that was not an event (terminated)

    @property
    def source(self) -> str:
        """The name the consumer's position is stored under."""
        return f"jetstream:{self.stream}:{self.durable}"

    # ------------------------------------------------------------------ lifecycle

    def connect(self) -> "SharedLog":
        async def go():
            self._nc = await nats.connect(self.url, connect_timeout=max(1, int(self.timeout)), allow_reconnect=False,
                                          token=self._token)
            self._js = self._nc.jetstream(timeout=self.timeout)
        try:
            self._run(go())
        except Exception as exc:
            self.close()
            raise StreamError(f"cannot reach NATS at {redact(self.url)}: {type(exc).__name__}: {redact(exc)}") from None
        return self

    def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            try:
                self._run(self._nc.close())
            except Exception:
                pass
        if not self._loop.is_closed():
            self._loop.close()

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    def create_stream(self, max_age: float | None = None) -> None:
        config = StreamConfig(name=self.stream, subjects=[f"{self.prefix}.*"], max_age=max_age)
        self._run(self._js.add_stream(config))

    def delete_stream(self) -> None:
        try:
            self._run(self._js.delete_stream(self.stream))
        except nats.js.errors.NotFoundError:
            pass

    # ------------------------------------------------------------------ publish

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        """Publish and wait for the stream to store each event (a PubAck) before returning."""
        async def go():
            for start in range(0, len(events), _PUBLISH_CHUNK):
                await asyncio.gather(*(
                    self._js.publish(f"{self.prefix}.{e.side}", e.encode(), stream=self.stream,
                                     headers={"Nats-Msg-Id": f"{e.side}:{e.position}"} if e.position else None)
                    for e in events[start:start + _PUBLISH_CHUNK]))
        self._run(go(), timeout=self.timeout + len(events) / 1000)

    # ------------------------------------------------------------------ consume

    def fetch(self, batch: int, timeout: float) -> list[ChangeEvent]:
        """Up to ``batch`` events, waiting at most ``timeout`` seconds; [] when none came."""
        async def go():
            if self._sub is None:
                config = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                                        deliver_policy=DeliverPolicy.ALL, ack_wait=self.ack_wait,
                                        max_ack_pending=-1)
                self._sub = await self._js.pull_subscribe(f"{self.prefix}.*", durable=self.durable,
                                                          stream=self.stream, config=config)
            try:
                return await self._sub.fetch(batch, timeout=timeout)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):  # nothing within the timeout
                return []
        try:
            messages = self._run(go(), timeout=timeout + self.timeout)
        except nats.js.errors.NotFoundError:
            raise StreamError(f"stream {self.stream} does not exist on {redact(self.url)}") from None
        events = []
        for message in messages:
            sequence = message.metadata.sequence.stream
            try:
                event = ChangeEvent.decode(message.data, position=f"{sequence:020d}")
            except ValueError as exc:
                self.rejected.append(f"stream {self.stream} message {sequence}: {exc}")
                self._run(message.term())
                continue
            self._unacked[event.position] = message
            events.append(event)
        return events

    def ack(self, events: Sequence[ChangeEvent]) -> None:
        async def go():
            for event in events:
                message = self._unacked.pop(event.position, None)
                if message is not None:
                    await message.ack()
            await self._nc.flush(timeout=self.timeout)
        self._run(go(), timeout=self.timeout * 2)

    def pending(self) -> Pending:
        info = self._run(self._js.consumer_info(self.stream, self.durable))
        return Pending(info.num_pending or 0, info.num_ack_pending or 0)

    def _run(self, coro, timeout: float | None = None):
        try:
            return self._loop.run_until_complete(asyncio.wait_for(coro, timeout or self.timeout))
        except nats.js.errors.NotFoundError:
            raise
        except (nats.errors.Error, TimeoutError) as exc:  # one line, naming the stream; never the URL's secrets
            raise StreamError(f"stream {self.stream}: {type(exc).__name__}: {redact(exc)}") from None
