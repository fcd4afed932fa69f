"""
The aisoc-inboxd command as an operator runs it: token mint/list/rotate/revoke, templates, db upgrade.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aisoc_inboxd.tokens import fingerprint, looks_like_token
from tests.support.shared import PROJECT


def cli(state: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AISOC_INBOX_STATE_DIR=str(state))
    prefix = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "aisoc_inboxd.cli", *prefix, *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_mint_prints_the_token_once_and_stores_only_its_fingerprint(tmp_path: Path) -> None:
    """mint --json prints token, fingerprint, tenant, template and path; the database never holds the token."""
    done = cli(tmp_path, "token", "mint", "--tenant", "acme", "--template", "pagerduty", "--json")
    assert done.returncode == 0, done.stderr
    minted = json.loads(done.stdout)
    assert looks_like_token(minted["token"])
    assert minted == {"token": minted["token"], "fingerprint": fingerprint(minted["token"]), "tenant": "acme",
                      "template": "pagerduty", "path": "/v1/inbox/" + minted["token"]}
    database = (tmp_path / "inboxd.sqlite3").read_bytes()
    assert minted["token"].encode() not in database
    assert minted["fingerprint"].encode() in database
    listing = cli(tmp_path, "token", "list", "--tenant", "acme", "--json")
    assert minted["token"] not in listing.stdout
    [row] = json.loads(listing.stdout)
    assert (row["fingerprint"], row["template"], row["state"], row["signed"]) == (
        minted["fingerprint"], "pagerduty", "active", False)


def test_rotate_and_revoke_by_fingerprint_prefix(tmp_path: Path) -> None:
    """rotate replaces a token (same template), revoke ends it; list shows both states."""
    minted = json.loads(cli(tmp_path, "token", "mint", "--tenant", "acme", "--template", "generic-json",
                            "--signing-secret", "s3cret", "--json").stdout)
    rotated = cli(tmp_path, "token", "rotate", "--tenant", "acme", minted["fingerprint"][:10], "--json")
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)
    assert new["token"] != minted["token"] and new["template"] == "generic-json"
    revoked = cli(tmp_path, "token", "revoke", "--tenant", "acme", new["token"])
    assert revoked.returncode == 0, revoked.stderr
    assert new["fingerprint"][:8] in revoked.stdout and new["token"] not in revoked.stdout
    rows = {r["fingerprint"]: r for r in json.loads(cli(tmp_path, "token", "list", "--tenant", "acme", "--json").stdout)}
    assert rows[minted["fingerprint"]]["state"] == "rotated"
    assert rows[new["fingerprint"]]["state"] == "revoked"
    assert rows[new["fingerprint"]]["signed"] is True


@pytest.mark.parametrize("args, message", [
    (["token", "mint", "--tenant", "acme", "--template", "nope"], "unknown template 'nope'; allowed: "),
    (["token", "revoke", "--tenant", "acme", "deadbeefdead"], "no active token of tenant 'acme' match"),
    (["token", "rotate", "--tenant", "acme", "abc"], "at least 8 hex characters"),
    (["token", "mint", "--tenant", "", "--template", "pagerduty"],
     "invalid tenant id '': a tenant id is 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or a digit"),
    (["token", "mint", "--tenant", "a b/c", "--template", "pagerduty"], "invalid tenant id 'a b/c': a tenant id is"),
    (["imap", "add", "--tenant", "a b/c", "--host", "imap.example.com", "--username", "u", "--password-file", "-"],
     "invalid tenant id 'a b/c': a tenant id is"),
])
def test_operator_mistakes_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    """A wrong template, fingerprint or tenant id exits 1 with one message and no traceback (nor the
    database's own words), and stores nothing."""
    done = cli(tmp_path, *args)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr and "CHECK constraint" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert json.loads(cli(tmp_path, "token", "list", "--tenant", "acme", "--json").stdout) == []


def test_another_tenant_cannot_revoke(tmp_path: Path) -> None:
    """A fingerprint of tenant A is unknown when tenant B's context asks to revoke it."""
    minted = json.loads(cli(tmp_path, "token", "mint", "--tenant", "a", "--template", "generic-json",
                            "--json").stdout)
    done = cli(tmp_path, "token", "revoke", "--tenant", "b", minted["fingerprint"])
    assert done.returncode == 1
    assert json.loads(cli(tmp_path, "token", "list", "--tenant", "a", "--json").stdout)[0]["state"] == "active"


def test_templates_list_and_db_upgrade(tmp_path: Path) -> None:
    """templates list shows the bundled templates; db upgrade reports the schema version."""
    listing = cli(tmp_path, "templates", "list")
    assert listing.returncode == 0
    assert "generic-json" in listing.stdout and "pagerduty" in listing.stdout
    upgrade = cli(tmp_path, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout.startswith("schema at version ")


def test_bad_config_is_reported_by_key(tmp_path: Path) -> None:
    """The CLI refuses a bad config file naming the key, like the daemon."""
    config = tmp_path / "bad.yaml"
    config.write_text("http:\n  max_body_bytes: -1\n")
    done = cli(tmp_path, "templates", "list", config=config)
    assert done.returncode == 1
    assert "http.max_body_bytes: must be greater than 0" in done.stderr


def test_config_is_accepted_after_the_subcommand(tmp_path: Path) -> None:
    """--config works before the subcommand and after it (aisoc-inboxd templates list --config X)."""
    config = tmp_path / "inboxd.yaml"
    config.write_text("templates:\n  allowed: [pagerduty]\n")
    after = cli(tmp_path, "templates", "list", "--config", str(config))
    assert after.returncode == 0, after.stderr
    assert [line.split()[0] for line in after.stdout.splitlines()] == ["pagerduty"]
    minted = cli(tmp_path, "token", "mint", "--tenant", "acme", "--template", "generic-json", "-c", str(config))
    assert minted.returncode == 1 and "unknown template 'generic-json'; allowed: pagerduty" in minted.stderr


def test_an_unknown_allowed_template_id_is_refused_by_name(tmp_path: Path) -> None:
    """templates.allowed naming a template that no directory has is an error naming the id."""
    config = tmp_path / "inboxd.yaml"
    config.write_text("templates:\n  allowed: [pagerduty, pagerdutty]\n")
    done = cli(tmp_path, "templates", "list", config=config)
    assert done.returncode == 1
    assert done.stderr.strip() == ("aisoc-inboxd: templates.allowed: unknown template id "
                                   "'pagerdutty' (not bundled nor in templates.directories)")


def test_help_is_plain_text() -> None:
    """The help shows no doc markup, and run documents the log options the unit uses."""
    top = subprocess.run([sys.executable, "-m", "aisoc_inboxd.cli", "--help"], cwd=PROJECT,
                         capture_output=True, text=True, timeout=60)
    run = subprocess.run([sys.executable, "-m", "aisoc_inboxd.cli", "run", "--help"], cwd=PROJECT,
                         capture_output=True, text=True, timeout=60)
    assert top.returncode == run.returncode == 0
    assert not any(markup in top.stdout + run.stdout for markup in ("C{", "L{", "I{"))
    assert "--log-format" in run.stdout and "--config" in run.stdout


def test_token_mint_with_postgres_creates_the_state_directory(tmp_path: Path, pg_database: Any) -> None:
    """With a PostgreSQL DSN the secret key still lives in the state directory, created on demand."""
    state = tmp_path / "not" / "yet"
    env = dict(os.environ, AISOC_INBOX_STATE_DIR=str(state), AISOC_INBOX_DATABASE_DSN=pg_database.dsn)
    done = subprocess.run([sys.executable, "-m", "aisoc_inboxd.cli", "token", "mint", "--tenant", "acme",
                           "--template", "pagerduty", "--json"], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert looks_like_token(json.loads(done.stdout)["token"])
    assert (state / "secret.key").is_file()
