"""
Running a route's coroutine to its end without a L{Deferred} of its own.

C{Deferred.fromCoroutine(coro).addBoth(done)} makes, per request, a Deferred with a canceller, its
cancellation status and a copy of the context the coroutine runs in, and when the coroutine ends it
fires that Deferred through another callback chain before C{done} is called. A route's request is
never cancelled and nothing in the daemon reads a context variable, so L{drive} resumes the
coroutine from the Deferreds it awaits and calls C{done} itself (the single-event webhook's request
awaits one Deferred: its events made durable).
"""
from __future__ import annotations

from typing import Any, Callable, Coroutine, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

T = TypeVar("T")

#: the coroutine awaits: it has neither returned nor raised
_AWAITING = object()


def drive(coro: Coroutine[Deferred[Any], Any, T], done: Callable[..., None], *args: Any) -> None:
    """
    Run C{coro}, resumed with the result (or failure) of each Deferred it awaits, then call
    C{done(result, *args)} with what it returned, or the L{Failure} of what it raised: what
    C{Deferred.fromCoroutine(coro).addBoth(done, *args)} does, with the same steps in the same order.
    C{done} runs on the stack of whatever fired the last awaited Deferred; it must not raise.
    """
    _step(None, coro, done, args)


def _step(result: object, coro: Coroutine[Deferred[Any], Any, T], done: Callable[..., None],
          args: tuple[Any, ...]) -> None:
    while True:
        try:
            if isinstance(result, Failure):
                awaited = result.throwExceptionIntoGenerator(coro)  # type: ignore[arg-type]
            else:
                awaited = coro.send(result)
        except StopIteration as e:
            outcome: object = e.value
        except BaseException:
            outcome = Failure()
        else:
            outcome = _AWAITING
        if outcome is not _AWAITING:  # called outside the handler, so what it raises has no context
            done(outcome, *args)
            return
        if not isinstance(awaited, Deferred):  # as twisted's driver: what is not a Deferred is sent back
            result = awaited
            continue
        # a Deferred that has fired goes on in this loop rather than one call deeper (as twisted's)
        waiting: list[Any] = [True, None]
        awaited.addBoth(_resumed, waiting, coro, done, args)
        if waiting[0]:
            waiting[0] = False
            return
        result = waiting[1]


def _resumed(result: object, waiting: list[Any], coro: Coroutine[Deferred[Any], Any, T],
             done: Callable[..., None], args: tuple[Any, ...]) -> None:
    if waiting[0]:
        waiting[0], waiting[1] = False, result
    else:
        _step(result, coro, done, args)
