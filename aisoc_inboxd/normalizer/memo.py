"""
Pure functions of a text remembered per text, for the generated template functions
(L{codegen<aisoc_inboxd.normalizer.codegen>}): the fields extractions and transforms read in the hot
path (CEF's act, outcome and proto, an event name, a vendor's severity word) take few distinct
values, so each is searched or transformed once rather than per event.
"""
from __future__ import annotations

from typing import Any, Callable

#: texts longer than this are not kept (the memo is for short field values, not message bodies)
KEPT_TEXT_LENGTH = 256
#: how many texts one memo keeps before it starts over
KEPT_TEXTS = 1024
_IMMUTABLE = (str, int, float, bool, type(None))


class TextMemo(dict[str, Any]):
    """
    C{memo[text]} is C{function(text)}, kept for the next time when the text is short and the
    result immutable (a list or object is made anew each time: events must not share one).
    Bounded: it starts over when it holds L{KEPT_TEXTS}.
    """

    def __init__(self, function: Callable[[str], Any], *immutable: Any) -> None:
        """
        @param immutable: results besides scalars that may be kept (C{MISSING}).
        """
        super().__init__()
        self.function = function
        self.immutable = immutable

    def __missing__(self, text: str) -> Any:
        value = self.function(text)
        if len(text) <= KEPT_TEXT_LENGTH and (isinstance(value, _IMMUTABLE) or value in self.immutable):
            if len(self) >= KEPT_TEXTS:
                self.clear()
            self[text] = value
        return value
