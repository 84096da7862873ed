"""A call's future with one second chance.

A cached locator resolution and a balanced replica call both try the fast
way first (the endpoints they already know, the replica whose turn it is)
and, when that fails in a way that sent nothing, take a slower way once.
Both hand the caller one future that mirrors the first attempt or, after
its failure, the second; cancelling that future cancels whichever attempt
is under way. No imports from the package: anything may use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def with_fallback(loop: asyncio.AbstractEventLoop, first: asyncio.Future[T],
                  fallback: Callable[[BaseException], asyncio.Future[T] | None]
                  ) -> asyncio.Future[T]:
    """A future of ``first``'s outcome, except that when ``first`` fails,
    ``fallback(error)`` may return a second attempt to take its place (None:
    the failure stands). An exception from ``fallback`` is the outcome."""
    outer: asyncio.Future[T] = loop.create_future()

    def mirror(done: asyncio.Future[T], second_chance: bool) -> None:
        if outer.done():  # cancelled by the caller
            return
        if done.cancelled():
            outer.cancel()
            return
        error = done.exception()
        if error is None:
            outer.set_result(done.result())
            return
        again = None
        if second_chance:
            try:
                again = fallback(error)
            except Exception as failure:
                outer.set_exception(failure)
                return
        if again is None:
            outer.set_exception(error)
            return
        again.add_done_callback(lambda d: mirror(d, False))
        outer.add_done_callback(lambda o: again.cancel() if o.cancelled() else None)

    first.add_done_callback(lambda d: mirror(d, True))
    outer.add_done_callback(lambda o: first.cancel() if o.cancelled() else None)
    return outer
