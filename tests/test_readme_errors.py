"""
README.md's "Errors" tables against the code: every row's outcome is one a refusal of that status
has, and every refusal intake or the HTTP channel can make has a row, so a code renamed or added
in one place and not the other fails here.
"""
from __future__ import annotations

import re
from pathlib import Path

from twisted.web.http import HTTPChannel

from aisoc_inboxd.web.channel import REFUSALS
from aisoc_inboxd.web.errors import STATUS_BY_OUTCOME

PROJECT = Path(__file__).parents[1]
#: a table row: its status, its message column and its outcome (or reason) column
_ROW = re.compile(r"^\| (\d{3}) \| (.*?) \| (`[a-z_]+`|—) \|", re.MULTILINE)
#: the refusals only the web makes, which carry their own status: HttpError(status, …, "outcome"),
#: and the route's own replies (Reply(500, {"error": …}, …, "error"))
_HTTP_ERROR = re.compile(r'HttpError\(\s*(\d{3}),(?:[^()]|\([^()]*\))*?"([a-z_]+)"')
_REPLY = re.compile(r'Reply\((\d{3}), \{"error"[^\n]*?"([a-z_]+)"\)')


def readme_rows() -> list[tuple[int, str, str]]:
    text = (PROJECT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Errors\n"):]
    section = section[:section.index("\n## ", 1)]
    return [(int(status), message, outcome.strip("`")) for status, message, outcome in _ROW.findall(section)]


def web_refusals() -> set[tuple[int, str]]:
    source = "\n".join(path.read_text(encoding="utf-8") for path in (PROJECT / "aisoc_inboxd").rglob("*.py"))
    return {(int(status), outcome) for pattern in (_HTTP_ERROR, _REPLY) for status, outcome in pattern.findall(source)}


def test_every_outcome_the_readme_names_is_the_codes_with_its_status() -> None:
    """Each row's status and outcome is a refusal the code makes: intake's (by outcome), the HTTP
    channel's (by reason), or the web's own; '—' only for the 404 of a path that is no route."""
    made = ({(status, outcome) for outcome, status in STATUS_BY_OUTCOME.items()}
            | {(status, reason) for reason, (status, _) in REFUSALS.items()}
            | web_refusals() | {(405, "method_not_allowed")})
    rows = readme_rows()
    assert len(rows) > 20
    assert [row for row in rows if (row[0], row[2]) not in made and row[2] != "—"] == []
    assert [row[:2] for row in rows if row[2] == "—"] == [(404, "`no such route`")]


def test_every_refusal_of_intake_and_the_channel_has_a_row() -> None:
    """No outcome of intake's refusals or the web's own (the CEF route's), no reason of the HTTP
    channel's, is missing from the README (the admin API's 404s have their own section)."""
    named = {outcome for _, _, outcome in readme_rows()}
    assert set(STATUS_BY_OUTCOME) - named == set()
    assert set(REFUSALS) - named == set()
    assert {outcome for _, outcome in web_refusals()} - {"not_found"} - named == set()


def test_the_channel_rows_say_what_the_channel_sends() -> None:
    """The HTTP channel's rows quote its messages, with the limits in them as N (twisted.web's fixed
    header count as it is)."""
    rows = {outcome: (status, message) for status, message, outcome in readme_rows()}
    for reason, (status, template) in REFUSALS.items():
        quoted = re.sub(r"\{[a-z_]+(:g)?\}", "N", template.replace("{max_headers}", str(HTTPChannel.maxHeaders)))
        assert rows[reason] == (status, f"`{quoted}`"), reason
