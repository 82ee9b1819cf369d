"""Eager start of coroutines: run inline until the first real wait.

Most FTP requests never wait for anything: PWD-like bookkeeping, opening a
passive port, a login checked against in-process counters, a file query on
the blocking :class:`~ftp_cluster.worker.pathio.PathIO`. Wrapping each in a
task costs a task object, a loop iteration and the scheduling calls, and a
churning server spends a good share of its CPU on exactly that. Here a
coroutine runs synchronously, inside the callback that started it; only
when it first suspends on a future does the rest become a task.

Python 3.12 has this built in (``Task(..., eager_start=True)``), which also
makes the task current while it runs eagerly; on 3.11 the rest is continued
by a small generator that hands the task every future the coroutine waits
on, so cancellation and results behave as if it had been a task from the
start. Code that runs before the first suspension cannot rely on
:func:`asyncio.current_task` on 3.11 (``asyncio.timeout`` needs it): such
code belongs in a task of its own (a transfer is one).
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["start_eagerly"]

T = TypeVar("T")


def start_eagerly(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T] | None:
    """Run ``coroutine`` now; ``None`` if it finished, else the task running the rest.

    An exception raised before the first suspension propagates to the caller.
    """
    if sys.version_info >= (3, 12):
        loop = asyncio.get_running_loop()
        task = asyncio.Task(coroutine, loop=loop, eager_start=True)
        if task.done():
            task.result()
            return None
        return task
    try:
        waiting_on = coroutine.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_finish(coroutine, waiting_on))


async def _finish(coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> T:
    return await _continue(coroutine, waiting_on)


@types.coroutine
def _continue(coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> Generator[Any, Any, T]:
    # Yielding what the coroutine yielded makes the task wait on the very
    # future the coroutine awaits (its "blocking" flag is still set); what
    # the task sends or throws back (a cancellation) goes to the coroutine.
    while True:
        try:
            sent = yield waiting_on
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as exc:  # forwarded to the coroutine, not handled
            try:
                waiting_on = coroutine.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                waiting_on = coroutine.send(sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
