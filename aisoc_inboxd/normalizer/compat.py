"""
Spec-shape compatibility: target paths the product spec uses that OCSF 1.8.0 does not have.

The spec's example template maps to a top-level C{url}, the spec's email template lists
attachments under C{finding.evidence.file}, and its constants set C{source_type}; none of these is
an attribute in OCSF 1.8.0 (see C{ocsf/MAPPING.md} §2(d)). Templates written that way must keep
working, so their targets are rewritten when the template loads, before the path is checked
against the schema. This table is the whole list; it is also printed in C{templates/README.md}.

A row matches a target equal to its spec path or starting with it followed by C{.}; the longest
matching row wins, and the rest of the target is kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Rewrite:
    """
    One spec-shape target and its OCSF 1.8.0 equivalent for a class (C{None}: every class).

    C{with_email}: C{None} always applies; C{True}/C{False} apply only when the template does/does
    not also map the alert's e-mail (C{evidences[0].email.from} or C{.to}), since an OCSF C{email}
    object needs a sender or a recipient.
    """

    class_uid: int | None
    spec_path: str
    ocsf_path: str
    why: str
    with_email: bool | None = None


SPEC_SHAPE_REWRITES: tuple[Rewrite, ...] = (
    Rewrite(2001, "url", "finding.src_url",
            "there is no top-level url in 2001; the link to the alert is finding.src_url"),
    Rewrite(2004, "url", "finding_info.src_url",
            "there is no top-level url in 2004; the link to the alert is finding_info.src_url"),
    Rewrite(2004, "finding", "finding_info",
            "2004 describes the finding in finding_info (finding is the deprecated 2001 object)"),
    Rewrite(2001, "finding.evidence", "evidence",
            "finding.evidence exists in no OCSF version; 2001 keeps evidence in the json_t evidence"),
    Rewrite(2004, "finding.evidence.file", "evidences[0].email.files[]",
            "attachments of the alert's e-mail are files of evidences[0].email", with_email=True),
    Rewrite(2004, "finding.evidence.file", "evidences[].file",
            "without an e-mail, each file is one evidence artifact", with_email=False),
    Rewrite(None, "source_type", "metadata.source",
            "source_type is not OCSF; metadata.source names the logical origin of the data"),
)

EMAIL_PARTY_PREFIXES = ("evidences[0].email.from", "evidences[0].email.to",
                        "evidences.email.from", "evidences.email.to")


def rewrite_target(class_uid: int, target: str, with_email: bool) -> str:
    """
    C{target} in OCSF 1.8.0 terms for a template of class C{class_uid}; unchanged if no row matches.
    """
    best: Rewrite | None = None
    for row in SPEC_SHAPE_REWRITES:
        if row.class_uid not in (None, class_uid):
            continue
        if row.with_email is not None and row.with_email != with_email:
            continue
        if target != row.spec_path and not target.startswith(row.spec_path + "."):
            continue
        if best is None or len(row.spec_path) > len(best.spec_path):
            best = row
    return target if best is None else best.ocsf_path + target[len(best.spec_path):]


def maps_email_party(targets: Iterable[str]) -> bool:
    """
    Whether any target fills the sender or recipients of C{evidences[0].email}.
    """
    return any(target.startswith(EMAIL_PARTY_PREFIXES) for target in targets)
