"""
Turn source values into values of an OCSF attribute's type, decided once per target at load time.

Vendors send ports and ids as strings, times as ISO strings, flags as C{"true"}. A coercer
converts what can be converted (C{"443"} → C{443} for integers, ports and enums; times → epoch ms;
numbers → strings for string attributes; attachment names or records → C{file} objects) and
answers L{INVALID} for the rest, which the normalizer then keeps in C{unmapped} instead of emitting
an event that does not validate.
"""
from __future__ import annotations

import math
import re
from email.utils import parseaddr
from typing import Any, Callable

from aisoc_inboxd.normalizer.ocsf import Attribute
from aisoc_inboxd.normalizer.timeparse import to_epoch_ms


class _Invalid:
    """
    The type of L{INVALID}: a value the target attribute cannot hold.
    """

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()

Coercer = Callable[[Any], Any]

_INTEGER_TEXT = re.compile(r"^[+-]?\d+(\.0*)?$")
#: an IPv4 address as written nearly always (0-255, no leading zeros, no spaces): the OCSF C{ip_t}
#: pattern accepts every such text, and backtracks through its IPv4 and IPv6 branches for ~1 µs
#: to say so; C{tests/test_fast_paths.py} holds the two together
_DOTTED_QUAD = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                          r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
# keys that hold a file name / MIME type / size in vendors' attachment records (Postmark, SES, …)
_FILE_NAME_KEYS = ("name", "filename", "file_name", "Name", "FileName", "fileName")
_FILE_TYPE_KEYS = ("mime_type", "content_type", "contentType", "ContentType", "type")
_FILE_SIZE_KEYS = ("size", "length", "content_length", "ContentLength", "contentLength")
_FILE_TYPE_REGULAR = 1
#: hash keys of file records: (key, OCSF fingerprint algorithm_id, its caption, hex digest length)
_FILE_HASHES = (("md5", 1, "MD5", 32), ("sha1", 2, "SHA-1", 40), ("sha256", 3, "SHA-256", 64),
                ("sha512", 4, "SHA-512", 128))
_HEX = re.compile(r"^[0-9a-fA-F]+$")


def coercer_for(attribute: Attribute) -> Coercer:
    """
    The coercer for values mapped to C{attribute}; C{ValueError} when templates cannot map to it.

    Arrays take a list (items that do not fit are dropped) or a single value (wrapped); free-form
    attributes (C{json_t}, C{unmapped}) take any value without its nulls.
    """
    if attribute.free_form:
        return drop_nulls
    scalar = _scalar_coercer(attribute)
    if not attribute.is_array:
        return scalar  # every scalar coercer answers INVALID for a list

    def each(value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        kept = [coerced for coerced in map(scalar, items) if coerced is not INVALID]
        return kept or INVALID

    each.items = scalar  # type: ignore[attr-defined]  # (a list of texts inlined by codegen)
    return each


def drop_nulls(value: Any) -> Any:
    """
    C{value} without C{None} anywhere inside (OCSF events never carry null), or L{INVALID} if
    it is C{None} itself.
    """
    if value is None:
        return INVALID
    # only a None itself becomes INVALID, so members are filtered on None and only containers recurse
    if isinstance(value, dict):
        return {k: drop_nulls(v) if isinstance(v, (dict, list)) else v for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) if isinstance(v, (dict, list)) else v for v in value if v is not None]
    return value


def _scalar_coercer(attribute: Attribute) -> Coercer:
    if attribute.object_type == "file":
        return _to_file
    if attribute.json_type == "object":
        raise ValueError(
            f"'{attribute.name}' is an object ({attribute.object_type}); map to one of its "
            f"attributes instead")
    if attribute.type == "timestamp_t":
        return _to_timestamp
    if attribute.json_type == "integer":
        return _integer_coercer(attribute)
    if attribute.json_type == "number":
        return _to_number
    if attribute.json_type == "boolean":
        return _to_boolean
    return _string_coercer(attribute)


def _integer_coercer(attribute: Attribute) -> Coercer:
    allowed = frozenset(attribute.enum) if attribute.enum else None
    low, high = attribute.value_range or (None, None)

    def coerce(value: Any) -> Any:
        number = _to_integer(value)
        if number is INVALID or (allowed is not None and number not in allowed):
            return INVALID
        if low is not None and not low <= number <= high:
            return INVALID
        return number

    coerce.integer = (allowed, low, high)  # type: ignore[attr-defined]  # (inlined for digit texts by codegen)
    return coerce


def _string_coercer(attribute: Attribute) -> Coercer:
    regex, max_len = attribute.regex, attribute.max_len
    is_email = attribute.type == "email_t"
    if regex is None and max_len is None and not is_email:
        return _to_string  # most string attributes: nothing to check beyond the type

    accepted = _DOTTED_QUAD.fullmatch if attribute.type == "ip_t" else None  # (a shortcut, never a refusal)

    def coerce(value: Any) -> Any:
        text = _to_string(value)
        if text is INVALID:
            return INVALID
        if is_email:
            text = parseaddr(text)[1] or text  # "Alice <a@x.example>" -> "a@x.example"
        if regex is not None and not (accepted is not None and accepted(text)) and not regex.search(text):
            return INVALID
        if max_len is not None and len(text) > max_len:
            return INVALID
        return text

    if accepted is not None:  # (codegen inlines the shortcut)
        coerce.dotted_quad = (accepted, max_len)  # type: ignore[attr-defined]
    return coerce


def _to_integer(value: Any) -> Any:
    if type(value) is str and value.isdigit() and value.isascii():  # a port, a count: no regex needed
        return int(value)
    if isinstance(value, bool):
        return INVALID
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else INVALID
    if isinstance(value, str) and _INTEGER_TEXT.match(value.strip()):
        return int(value.strip().split(".")[0])
    return INVALID


def _to_number(value: Any) -> Any:
    if isinstance(value, bool):
        return INVALID
    if isinstance(value, int):  # finite, however many digits (one past a float's range has no float to test)
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else INVALID
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return INVALID
        return number if math.isfinite(number) else INVALID
    return INVALID


def _to_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return INVALID


def _to_string(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return INVALID


def _to_file(value: Any) -> Any:
    """
    An OCSF C{file} from a file name or a file record: an attachment (name, MIME type, size,
    sha256) or a file a detection names (name, path, size, md5/sha1/sha256/sha512).
    """
    if isinstance(value, str):
        return {"name": value, "type_id": _FILE_TYPE_REGULAR} if value.strip() else INVALID
    if not isinstance(value, dict):
        return INVALID
    name = _first_string(value, _FILE_NAME_KEYS)
    if name is None:
        return INVALID
    shaped: dict[str, Any] = {"name": name, "type_id": _FILE_TYPE_REGULAR}
    path = _first_string(value, ("path",))
    if path is not None:
        shaped["path"] = path
    mime_type = _first_string(value, _FILE_TYPE_KEYS)
    if mime_type is not None:
        shaped["mime_type"] = mime_type
    size = next((_to_integer(value[k]) for k in _FILE_SIZE_KEYS if k in value), INVALID)
    if size is not INVALID and size >= 0:
        shaped["size"] = size
    hashes = [{"algorithm_id": algorithm_id, "algorithm": caption, "value": digest.lower()}
              for key, algorithm_id, caption, length in _FILE_HASHES
              if isinstance(digest := value.get(key), str) and len(digest) == length and _HEX.match(digest)]
    if hashes:
        shaped["hashes"] = hashes
    return shaped


def _first_string(record: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        candidate = record.get(key)
        if isinstance(candidate, str) and candidate.strip():
            return candidate
    return None


def _to_timestamp(value: Any) -> Any:
    return _or_invalid(to_epoch_ms(value))


_to_timestamp.epoch_ms = True  # type: ignore[attr-defined]  # (read by codegen through fast_to_epoch_ms)


def _or_invalid(value: Any) -> Any:
    return INVALID if value is None else value
