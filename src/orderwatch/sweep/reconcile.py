"""The executor of an incremental plan (``plan.py``): each batch of questions answered — the server's over HTTP,
a few at a time, the snapshot's in one worker-thread hop — and the answers sent back, until the plan's verdict.

A remote question that fails after its retries is answered ``Failed`` (the plan decides what that means), except
the very first, whose failure fails the poll as a ``SourceError``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Final

import anyio
import anyio.to_thread
import httpx

from orderwatch.errors import SourceError
from orderwatch.sources import Source, adapter_for
from orderwatch.sweep import plan
from orderwatch.sweep.http import Tally, check_transport, fetch_detail, fetch_page

REMOTE_CONCURRENCY: Final = 4  # requests of one batch in flight at once

Local = Callable[[Sequence[plan.LocalCount | plan.LocalRows | plan.LocalValues]], list[plan.Answer]]


class Executor:
    """Runs one plan for ``src``: remote questions through ``client``, local ones through ``local`` (blocking; run
    in a worker thread)."""

    def __init__(self, client: httpx.AsyncClient, src: Source, local: Local, tally: Tally) -> None:
        self.client = client
        self.src = src
        self.local = local
        self.tally = tally
        self.deadline = time.monotonic() + src.retry_budget
        self._first = True

    async def run(self, steps: plan.Plan) -> plan.Verdict:
        """Drive ``steps`` to its verdict."""
        check_transport(self.src)
        try:
            batch = next(steps)
            while True:
                batch = steps.send(await self.answer(batch))
        except StopIteration as stop:
            verdict: plan.Verdict = stop.value
            return verdict

    async def answer(self, batch: Sequence[plan.Ask]) -> list[plan.Answer]:
        """The answers to one batch, in its order."""
        answers: list[plan.Answer] = [None] * len(batch)
        local = [
            (i, a) for i, a in enumerate(batch) if isinstance(a, plan.LocalCount | plan.LocalRows | plan.LocalValues)
        ]
        remote = [(i, a) for i, a in enumerate(batch) if isinstance(a, plan.List | plan.Detail)]
        if local:
            found = await anyio.to_thread.run_sync(self.local, [a for _, a in local])
            for (i, _), value in zip(local, found, strict=True):
                answers[i] = value
        if remote:
            first, self._first = self._first, False
            limiter = anyio.CapacityLimiter(REMOTE_CONCURRENCY)

            async def one(i: int, ask: plan.List | plan.Detail) -> None:
                async with limiter:
                    answers[i] = await self._remote(ask, fail_poll=first and i == remote[0][0])

            async with anyio.create_task_group() as tg:
                for i, ask in remote:
                    tg.start_soon(one, i, ask)
        return answers

    async def _remote(self, ask: plan.List | plan.Detail, *, fail_poll: bool) -> plan.Answer:
        src, adapter = self.src, adapter_for(self.src)
        try:
            if isinstance(ask, plan.Detail):
                return await fetch_detail(self.client, src, ask.key, self.tally, self.deadline)
            states = (ask.state,) if ask.state is not None else ()
            req = adapter.list_request(src, ask.cursor, page_size=ask.size, states=states, part=ask.part)
            page = await fetch_page(self.client, src, req, self.tally, self.deadline)
            # the plan keeps what it is answered until the poll ends: each order in an exact-size buffer
            return dataclasses.replace(page, orders=tuple(order.compact() for order in page.orders))
        except SourceError as exc:
            if fail_poll:
                raise
            return plan.Failed(exc.message)
