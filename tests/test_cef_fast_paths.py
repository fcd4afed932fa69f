"""
The CEF extension parser's fast path (L{aisoc_inboxd.formats.cef.parse_extension}, which strips a
value's trailing spaces only when one can have any) against its reference
(L{parse_extension_reference}, which strips every value): for the extension of every CEF line in
the fixtures and the suite's strings, and for generated extensions (escapes, runs of spaces, keys
without values, C{=} inside values, unicode, cut short anywhere), both give the same keys in the
same order with the same values, or the same error.
"""
from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisoc_inboxd.formats.cef import HEADER, CefError, parse_extension, parse_extension_reference
from tests.test_one_pass_cef import CORPUS


def outcome(parse: Callable[[str], dict[str, str]], extension: str) -> Any:
    """
    What parsing C{extension} gives, comparable in full: its pairs in order, or the error.
    """
    try:
        return list(parse(extension).items())
    except CefError as error:
        return ("CefError", str(error))


def assert_same(extension: str) -> None:
    assert outcome(parse_extension, extension) == outcome(parse_extension_reference, extension), extension


def _corpus_extensions() -> list[str]:
    found = []
    for line in CORPUS:
        text = line.decode("utf-8", "replace")
        start = text.find("CEF:")
        match = None if start < 0 else HEADER.match(text, start)
        if match is not None and match.group(8):
            found.append(match.group(8))
    return found


EXTENSIONS = _corpus_extensions()


def test_the_corpus_has_extensions_of_both_kinds() -> None:
    """
    The corpus below reaches both ways of reading values: without a value that could end in a
    space (nothing stripped) and with runs of spaces or a trailing one (every value stripped).
    """
    stripped = [e for e in EXTENSIONS if "  " in e.lstrip(" ") or e.endswith(" ")]
    assert len(EXTENSIONS) > 100
    assert 0 < len(stripped) < len(EXTENSIONS)


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_corpus(extension: str) -> None:
    assert_same(extension)
    assert_same(extension + " ")
    assert_same(extension.replace(" ", "  "))


_KEY = st.one_of(st.sampled_from(["rt", "src", "dst", "msg", "cs1", "cs1Label", "request", "ad.field[0]",
                                  "ad.Error_,Code", "_cefVer", "a-b"]),
                 st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.,\[\]-]{0,8}", fullmatch=True))
_PIECE = st.one_of(st.sampled_from(["\\=", "\\\\", "\\n", "\\r", "\\|", "\\", "=", " = ", "|", " ", "  ", "   ",
                                    "\u00e9", "\u2028", "\n", "\t", "x=y", " k=", "a b", "http://h/?a=b&c=d"]),
                   st.text(st.characters(blacklist_categories=("Cs",)), max_size=8))
_VALUE = st.lists(_PIECE, max_size=5).map("".join)
_SEPARATOR = st.sampled_from([" ", " ", " ", "  ", "   ", "\t", ""])
_EXTENSION = st.one_of(
    st.lists(st.tuples(_KEY, _VALUE, _SEPARATOR), min_size=1, max_size=8).map(
        lambda pairs: "".join(f"{key}={value}{separator}" for key, value, separator in pairs)),
    st.text(max_size=40),
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extension=_EXTENSION, lead=st.sampled_from(["", " ", "  "]), cut=st.integers(min_value=0))
def test_generated_extensions(extension: str, lead: str, cut: int) -> None:
    assert_same(lead + extension)
    assert_same(lead + extension[:cut % (len(extension) + 1)])  # cut short anywhere
