"""
The template tooling as an author runs it: C{aisoc-inboxd templates check} and C{templates render}.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.ocsf import assert_valid_ocsf
from tests.support.shared import FIXTURES, PROJECT


def cli(state: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AISOC_INBOX_STATE_DIR=str(state))
    return subprocess.run([sys.executable, "-m", "aisoc_inboxd.cli", *args], cwd=PROJECT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


GOOD = """\
    id: acme
    vendor_name: Acme
    product_name: Acme Cloud
    class_uid: 2004
    class_name: Detection Finding
    activity_id: 1
    field_map:
      alert.id: finding_info.uid
      alert.title: finding_info.title
    severity_field: alert.priority
    severity_map: {P1: 5}
    time_field: alert.created_at
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def test_check_without_paths_checks_the_bundled_templates(tmp_path: Path) -> None:
    """templates check with no path validates every bundled template and exits 0."""
    done = cli(tmp_path, "templates", "check")
    assert done.returncode == 0, done.stderr
    bundled = len(list((PROJECT / "templates").glob("*.yaml")))
    assert done.stdout.strip() == f"{bundled} template(s) ok, 0 problem(s)"


def test_check_reports_every_bad_file_with_its_key(tmp_path: Path) -> None:
    """Every bad file in a directory is reported as file: key: problem, and the exit code is 1."""
    folder = tmp_path / "mine"
    write(folder, "acme.yaml", GOOD)
    write(folder, "typo.yaml", GOOD.replace("id: acme", "id: typo").replace("finding_info.title", "finding_info.titel"))
    write(folder, "badmap.yaml", GOOD.replace("id: acme", "id: badmap") + "    activity_field: action\n")
    done = cli(tmp_path, "templates", "check", str(folder))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert any(line.startswith(f"{folder / 'typo.yaml'}: field_map.alert.title: ") for line in lines)
    assert any(line.startswith(f"{folder / 'badmap.yaml'}: activity_map: ") for line in lines)
    assert "1 template(s) ok, 2 problem(s)" in done.stdout


def test_check_a_single_file_and_a_missing_one(tmp_path: Path) -> None:
    """A good file passes; a path that does not exist is a problem, not a traceback."""
    good = write(tmp_path / "t", "acme.yaml", GOOD)
    assert cli(tmp_path, "templates", "check", str(good)).returncode == 0
    done = cli(tmp_path, "templates", "check", str(tmp_path / "nope.yaml"))
    assert done.returncode == 1
    assert "nope.yaml: (file): no such file or directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_render_prints_valid_ocsf_for_a_bundled_template(tmp_path: Path) -> None:
    """render ID SAMPLE prints the event the payload becomes; --validate passes on it."""
    sample = FIXTURES / "webhooks" / "opsgenie" / "alert-create.json"
    done = cli(tmp_path, "templates", "render", "opsgenie", str(sample), "--validate")
    assert done.returncode == 0, done.stderr
    event = json.loads(done.stdout)
    assert_valid_ocsf(event)
    assert (event["finding_info"]["uid"], event["time"]) == ("052652ac-5d1c-464a-812a-7dd18bbfba8c", 1420452193166)
    assert not (tmp_path / "events").exists()


def test_render_reads_ndjson_from_stdin_with_headers(tmp_path: Path) -> None:
    """NDJSON on stdin renders one event per line; a header-acknowledged ping renders none."""
    lines = "\n".join(json.dumps({"alert": {"id": f"a{i}", "title": f"t{i}", "priority": "P1"}}) for i in range(3))
    template = write(tmp_path / "t", "acme.yaml", GOOD)
    done = cli(tmp_path, "templates", "render", str(template), "-", "--validate", stdin=lines)
    assert done.returncode == 0, done.stderr
    decoder = json.JSONDecoder()
    text, events = done.stdout.strip(), []
    while text:
        event, end = decoder.raw_decode(text)
        events.append(event)
        text = text[end:].strip()
    assert [e["finding_info"]["uid"] for e in events] == ["a0", "a1", "a2"]
    ping = cli(tmp_path, "templates", "render", "github-security-advisory", "-", "--header", "X-GitHub-Event: ping",
               stdin='{"zen": "Design for failure."}')
    assert (ping.returncode, ping.stdout) == (0, "")
    assert "acknowledged without publishing (0 events)" in ping.stderr


def test_render_validate_fails_on_an_invalid_event(tmp_path: Path) -> None:
    """--validate exits 1 naming the event and the OCSF error when a template emits invalid OCSF."""
    template = write(tmp_path / "t", "acme.yaml", GOOD + "    constants:\n      finding_info.analytic.name: rules\n")
    done = cli(tmp_path, "templates", "render", str(template), "-", "--validate", stdin='{"alert": {"id": "1"}}')
    assert done.returncode == 1
    assert "event 0: finding_info.analytic.type_id" in done.stderr


def test_render_mistakes_are_one_clear_line(tmp_path: Path) -> None:
    """An unknown template or a body that is not JSON exits 1 with one message."""
    unknown = cli(tmp_path, "templates", "render", "nope", "-", stdin="{}")
    assert unknown.returncode == 1 and "unknown template 'nope'" in unknown.stderr
    bad = cli(tmp_path, "templates", "render", "generic-json", "-", stdin="not json")
    assert bad.returncode == 1 and "-: bad body: invalid JSON" in bad.stderr
    assert "Traceback" not in unknown.stderr + bad.stderr
