"""
CEF helpers only tests need: a batch parsed line by line with the reasons of its malformed lines
(the intakes only count them), and writing values as CEF for round trips.
"""
from __future__ import annotations

from dataclasses import dataclass

from aisoc_inboxd.formats.cef import CefError, CefEvent, cef_lines, parse_cef_line


@dataclass(frozen=True)
class Batch:
    """
    The events of a batch and, for each line dropped as malformed, its 1-based number and why.
    """

    events: tuple[CefEvent, ...]
    errors: tuple[tuple[int, str], ...]

    @property
    def malformed(self) -> int:
        return len(self.errors)


def parse_batch(data: bytes | str) -> Batch:
    events: list[CefEvent] = []
    errors: list[tuple[int, str]] = []
    for number, line in cef_lines(data):
        try:
            events.append(parse_cef_line(line))
        except CefError as e:
            errors.append((number, str(e)))
    return Batch(tuple(events), tuple(errors))


def escape_header_field(value: str) -> str:
    """
    C{value} written as a CEF header field: backslashes and pipes escaped.

    @raise ValueError: C{value} holds a line break, which CEF headers cannot carry.
    """
    if "\n" in value or "\r" in value:
        raise ValueError("a CEF header field cannot hold a line break")
    return value.replace("\\", "\\\\").replace("|", "\\|")


def escape_extension_value(value: str) -> str:
    """
    C{value} written as a CEF extension value: backslashes, C{=} and line breaks escaped. Trailing
    spaces cannot be written: a parser trims them.
    """
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")
