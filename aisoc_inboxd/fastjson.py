"""
JSON in and out of the per-event path through orjson, read by one set of rules whichever parser
does the work.

orjson parses and serialises several times faster than the stdlib, which is most of the per-event
cost of a JSON batch. It refuses some texts the stdlib takes (NaN and Infinity literals, numbers past
a double's range, lone surrogates, nesting past 1024 levels) and reads integers past 64 bits as
floats, losing digits. Those texts, and every malformed one (so error messages keep the stdlib's line
and column), are read by the stdlib instead. Either way a body is held to the same rules, enforced
here once so that no later stage (the normalizer's walks, serialising the event) and no reader
downstream meets what it cannot take:

  - nesting deeper than L{MAX_DEPTH} levels is refused: alerts nest a few levels, and the stages
    after decoding recurse;
  - a string with a lone surrogate escape (C{"\\ud800"}) is refused: it is no character, cannot be
    written as UTF-8, and replacing it would change the alert;
  - an integer with more digits than the interpreter converts (C{sys.get_int_max_str_digits()},
    4300) is refused; integers past 64 bits keep every digit;
  - C{NaN}, C{Infinity}, C{-Infinity} and numbers past a double's range (C{1e999}) read as C{null}:
    no JSON reader takes them (Python's json.dumps writes them, so senders do).

A refusal is a L{RefusedJson}, a C{json.JSONDecodeError} naming the rule and where the text breaks
it. One output differs from the stdlib's in text, not value: a float's exponent (C{1e22}, not C{1e+22}).
"""
from __future__ import annotations

import json
import math
import re
import sys
from json.decoder import WHITESPACE
from typing import Any, Sequence

import orjson

#: the deepest nesting of objects and arrays a JSON text may have (C{{"a": 1}} is one level)
MAX_DEPTH = 64

#: for one fast pass over a text: every digit as 0 (a run of digits is a run of zeros a substring
#: search finds), every opening bracket as {
_DIGITS_AND_BRACKETS = bytes.maketrans(b"123456789[", b"000000000{")
#: an escaped backslash (matched to stay in step) or a surrogate escape, a high one with its low half
_SURROGATE_ESCAPE = re.compile(
    r"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?|\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_LONE_ESCAPE_LENGTH = len("\\ud800")
#: what decides nesting: brackets, and strings (skipped whole: brackets in them are text)
_BRACKET_OR_STRING = re.compile(r'(?P<open>[\[{])|(?P<close>[\]}])|"(?:[^"\\]|\\.)*"')


class RefusedJson(json.JSONDecodeError):
    """
    A JSON text that breaks one of the rules above; C{msg} names the rule, C{lineno}/C{colno} where.
    """


def _finite_or_null(literal: str) -> float | None:
    value = float(literal)
    return value if math.isfinite(value) else None


_DECODER = json.JSONDecoder(parse_float=_finite_or_null, parse_constant=lambda name: None)


def loads(text: str) -> Any:
    """
    The value of one JSON text, by the rules above; raises C{json.JSONDecodeError} (a
    L{RefusedJson} for a rule) with the line and column.
    """
    scan = text.encode("utf-8", "surrogatepass").translate(_DIGITS_AND_BRACKETS)
    if not _may_hold_integers_past_64_bits(scan):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        else:  # orjson refuses lone surrogates and non-finite numbers; long integers never reach it
            _check_depth(value, scan.count(b"{"), text, 0)
            return value
    value, end = raw_decode(text, WHITESPACE.match(text, 0).end())
    end = WHITESPACE.match(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def loads_each(texts: Sequence[str]) -> list[Any] | None:
    """
    The value of each of C{texts} (the lines or envelopes of one body) as L{loads} reads it, or
    C{None} when one of them is not a JSON text orjson reads within the rules above (malformed, a
    refusal, an integer past 64 bits): the caller then reads them one by one with L{loads}, which
    places the error. The check for long integers is one scan over all of them, not one per text;
    for an ASCII body (a byte per character) each text's opening brackets are counted on that scan
    at the text's offsets (one count, not one per bracket kind).
    """
    joined = "\n".join(texts)
    scan = joined.encode("utf-8", "surrogatepass").translate(_DIGITS_AND_BRACKETS)
    if _may_hold_integers_past_64_bits(scan):
        return None
    values, count, ascii, start = [], scan.count, len(scan) == len(joined), 0
    try:
        for text in texts:
            value = orjson.loads(text)
            end = start + len(text)
            brackets = count(b"{", start, end) if ascii else text.count("{") + text.count("[")
            if brackets > MAX_DEPTH:  # (L{_check_depth}'s own first test, without its call for every text)
                _check_depth(value, brackets, text, 0)
            values.append(value)
            start = end + 1
    except (orjson.JSONDecodeError, RefusedJson):
        return None
    return values


def raw_decode(text: str, start: int) -> tuple[Any, int]:
    """
    The JSON value that starts at C{start} in C{text} and the index where it ends (as
    C{json.JSONDecoder.raw_decode}, for bodies of concatenated values), by the rules above.
    """
    try:
        value, end = _DECODER.raw_decode(text, start)
    except RecursionError:
        raise RefusedJson(f"nested deeper than {MAX_DEPTH} levels", text, _past_max_depth(text, start)) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # int() refuses a literal longer than the interpreter's digit limit
        digits = sys.get_int_max_str_digits()
        raise RefusedJson(f"a number with more than {digits} digits", text, _long_integer(text, start, digits)) \
            from None
    _check_depth(value, text.count("{", start, end) + text.count("[", start, end), text, start)
    _check_surrogates(text, start, end)
    return value, end


#: how far L{array_holds_more_than} reads for each item it looks for: far enough for arrays of many
#: tiny items (the costly kind to read whole: an array of larger ones holds fewer, each built and
#: walked at a smaller share of the body's cost), and too near for most arrays within the limit to
#: hold the commas that would make it read them twice (an alert has about one per 30 characters)
CHARS_PER_COUNTED_ITEM = 32


def array_holds_more_than(text: str, start: int, limit: int) -> bool:
    """
    Whether the JSON array that opens at C{start} in C{text} has more than C{limit} items, found by
    reading only its first C{limit + 1} items, each a JSON text by the rules above (the array's own
    level counted in their nesting). C{False} when that is not known within the first
    L{CHARS_PER_COUNTED_ITEM} characters per item (or not an array, fewer items, a malformed one
    among them): the caller then reads the whole text, which places any error. A body of millions of C{{}}s is so refused
    for its count at the cost of ten thousand, where reading it whole builds and walks millions of
    objects.
    """
    if not text.startswith("[", start):
        return False
    window = text[start:start + CHARS_PER_COUNTED_ITEM * (limit + 1)]
    if len(window) == len(text) - start or window.count(",") < limit:
        return False  # all of it within the window: as cheap to read whole; n items need n - 1 commas
    position, end = WHITESPACE.match(window, 1).end(), 0
    for index in range(limit + 1):
        if index:
            if not window.startswith(",", position):
                return False  # no more items than read (or a malformed array)
            position = WHITESPACE.match(window, position + 1).end()
        try:
            _, end = _DECODER.raw_decode(window, position)  # only where the item ends; its rules below
        except (ValueError, RecursionError):
            return False  # malformed, or cut by the window's end
        position = WHITESPACE.match(window, end).end()
    if not window.startswith((",", "]"), position):
        return False  # a number the window's end cut short reads as a shorter one: its end unknown
    try:
        loads(window[:end] + "]")
    except json.JSONDecodeError:
        return False
    return True


def dumps_compact(value: Any) -> bytes:
    """
    C{json.dumps(value, separators=(",", ":"), ensure_ascii=False)} as UTF-8.
    """
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a >64-bit int or a non-str key
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _may_hold_integers_past_64_bits(scan: bytes) -> bool:
    """
    Whether a text (translated by L{_DIGITS_AND_BRACKETS}) has a run of 20 digits, or of 19 after a
    minus sign: orjson would read such an integer as a float. (Several times faster than a regular
    expression; a run inside a string costs only the slower parser.) C{find}, not C{in}: C{bytes in
    bytes} first tries its operand as an integer, raising and clearing a TypeError on every body.
    """
    if scan.find(b"0000000000000000000") < 0:  # no run of 19: the common case, one search
        return False
    return scan.find(b"00000000000000000000") >= 0 or scan.find(b"-0000000000000000000") >= 0


def _check_depth(value: Any, brackets: int, text: str, start: int) -> None:
    """
    Refuse C{value}, read from C{text} at C{start}, when it nests deeper than L{MAX_DEPTH}; with no
    more opening C{brackets} (strings included) than that, it cannot.
    """
    if brackets <= MAX_DEPTH:
        return
    level = [value] if isinstance(value, (dict, list)) else []
    for _ in range(MAX_DEPTH):
        level = [child for node in level for child in (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, (dict, list))]
        if not level:
            return
    raise RefusedJson(f"nested deeper than {MAX_DEPTH} levels", text, _past_max_depth(text, start))


def _check_surrogates(text: str, start: int, end: int) -> None:
    if text.find("\\u", start, end) < 0:
        return
    for escape in _SURROGATE_ESCAPE.finditer(text, start, end):
        if len(escape.group()) == _LONE_ESCAPE_LENGTH:
            raise RefusedJson(f"string contains a lone surrogate ({escape.group()})", text, escape.start())


def _past_max_depth(text: str, start: int) -> int:
    """
    Where the first bracket past L{MAX_DEPTH} levels opens (only called once that is known).
    """
    depth = 0
    for token in _BRACKET_OR_STRING.finditer(text, start):
        if token.lastgroup == "open":
            depth += 1
            if depth > MAX_DEPTH:
                return token.start()
        elif token.lastgroup == "close":
            depth -= 1
    return start


def _long_integer(text: str, start: int, digits: int) -> int:
    """
    Where the first integer literal longer than C{digits} starts (only called once one is known).
    """
    found = re.compile(rf"(?<![0-9.eE+-])-?[0-9]{{{digits + 1},}}(?![0-9.eE])").search(text, start)
    return found.start() if found else start
