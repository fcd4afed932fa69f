"""
Versioned schema migrations, one folder per SQL dialect, shipped as package data.

A migration is a file C{NNNN_name.sql}; versions start at 1 and have no gaps. Files are never edited
once released: a schema change is a new file. The store applies each pending one in its own
transaction and records it in C{schema_migrations}.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

from aisoc_inboxd.store import StoreError

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> tuple[Migration, ...]:
    """
    The migrations of one dialect (C{"sqlite"} or C{"postgres"}), in version order.

    @raise StoreError: when the installed package lacks them or their versions have gaps.
    """
    folder = files(__name__).joinpath(dialect)
    found: list[Migration] = []
    if folder.is_dir():
        for entry in folder.iterdir():
            match = _FILE_NAME.match(entry.name)
            if match:
                found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if not found or [m.version for m in found] != list(range(1, len(found) + 1)):
        raise StoreError(f"the {dialect} migrations of this installation are missing or have gaps "
                         f"(found versions {[m.version for m in found]})")
    return tuple(found)
