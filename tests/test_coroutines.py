"""
L{aisoc_inboxd.coroutines.drive} against its reference, C{Deferred.fromCoroutine(coro).addBoth(done)}:
the coroutine sees the same results and exceptions in the same order, ends the same way, C{done}
is called once at the same point, and every Deferred it awaited is left consumed the same way.
"""
from __future__ import annotations

from typing import Any, Callable

from hypothesis import given, settings, strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from aisoc_inboxd.coroutines import drive


class Boom(Exception):
    pass


#: one await of the script: a Deferred that has fired (with a value, or failed) or fires later,
#: an inner coroutine awaiting one, and whether a failure is caught where it is awaited
step = st.tuples(st.sampled_from(["fired", "failed", "later", "later_failed", "nested"]),
                 st.integers(0, 9), st.booleans())
script = st.tuples(st.lists(step, max_size=6), st.sampled_from(["return", "raise"]), st.integers(0, 9))


def run(steps: list[tuple[str, int, bool]], end: str, value: int,
        start: Callable[[Any, Callable[[object], None]], None]) -> list[Any]:
    """
    What happens when the coroutine of the script runs under C{start}: the trace of what it saw,
    when C{done} came and with what, and the results left on the Deferreds it awaited.
    """
    trace: list[Any] = []
    later: list[tuple[Deferred[int], str, int]] = []
    awaited: list[Deferred[int]] = []

    def deferred(kind: str, n: int) -> Deferred[int]:
        if kind == "fired":
            d = succeed(n)
        elif kind == "failed":
            d = fail(Boom(n))
        else:
            d = Deferred()
            later.append((d, kind, n))
        awaited.append(d)
        return d

    async def inner(n: int) -> int:
        return await deferred("later", n) + 100

    async def coroutine() -> int:
        for kind, n, catch in steps:
            try:
                got = await (inner(n) if kind == "nested" else deferred(kind, n))
                trace.append(("got", got))
            except Boom as e:
                trace.append(("raised", e.args))
                if not catch:
                    raise
        if end == "raise":
            raise Boom("end", value)
        return value

    def done(outcome: object) -> None:
        if isinstance(outcome, Failure):
            trace.append(("done failure", outcome.type, outcome.value.args))
        else:
            trace.append(("done", outcome))

    start(coroutine(), done)
    while later:
        d, kind, n = later.pop(0)
        trace.append(("firing", n))
        if kind == "later_failed":
            d.errback(Boom(n))
        else:
            d.callback(n)
    return trace + [("left", [d.result if not isinstance(d.result, Failure) else d.result.type for d in awaited])]


def reference(coro: Any, done: Callable[[object], None]) -> None:
    Deferred.fromCoroutine(coro).addBoth(done)


def driven(coro: Any, done: Callable[[object], None]) -> None:
    drive(coro, done)


@settings(max_examples=500, deadline=None)
@given(script)
def test_drive_as_from_coroutine(case: tuple[list[tuple[str, int, bool]], str, int]) -> None:
    """
    Every script of awaits (fired, failed, firing later, nested, caught or not) runs alike.
    """
    steps, end, value = case
    assert run(steps, end, value, driven) == run(steps, end, value, reference)


def test_done_gets_extra_arguments() -> None:
    """
    C{done} is called with the outcome and then the extra arguments, once.
    """
    calls: list[Any] = []

    async def coroutine() -> int:
        return await succeed(1) + 1

    drive(coroutine(), lambda *a: calls.append(a), "x", 3)
    assert calls == [(2, "x", 3)]


def test_done_called_outside_the_coroutine_s_end() -> None:
    """
    C{done} runs once the coroutine's end is handled, as after C{fromCoroutine}: an exception it
    raises and logs carries no C{StopIteration} (or the coroutine's own error) as its context.
    """
    contexts: list[Any] = []

    def done(outcome: object) -> None:
        try:
            raise ValueError(outcome)
        except ValueError as e:
            contexts.append(e.__context__)

    async def returns() -> int:
        return await succeed(1)

    async def raises() -> int:
        raise Boom(await succeed(1))

    drive(returns(), done)
    drive(raises(), done)
    assert contexts == [None, None]
