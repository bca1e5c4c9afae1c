"""--config: a TOML file of defaults and groups; the command line and the
environment win over it; a bad file is one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checker.cli import parse_args
from checker.config import ConfigError
from tests.helpers import SwitchableSite, raw_server
from tests.test_cli import checker, one_error_line

pytestmark = pytest.mark.timeout(60)


def test_file_values_are_defaults_the_command_line_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "checker.toml"
    config.write_text(
        "[check]\n"
        "concurrency = 7\n"
        'per-host = 3\nformat = ["csv", "json"]\n'
        'header = ["X-Env: prod"]\n'
        "insecure = true\n"
        "alert_after = 2\n"
        'notify_webhook = "http://127.0.0.1:9/from-file"\n'
        'user_agent = "checker (ops@example.com)"\n'
    )
    monkeypatch.delenv("CHECKER_ALERT_AFTER", raising=False)
    monkeypatch.setenv("CHECKER_NOTIFY_WEBHOOK", "http://127.0.0.1:9/from-env")
    args, file = parse_args(["check", "--config", str(config), "u.txt", "--concurrency", "9"])
    assert file is not None and file.groups_csv is None
    assert args.concurrency == 9  # the command line wins
    assert args.per_host == 3 and args.format == ["csv", "json"] and args.insecure is True
    assert args.headers == [("X-Env", "prod")] and args.alert_after == 2
    assert args.user_agent == "checker (ops@example.com)"
    assert args.notify_webhook == "http://127.0.0.1:9/from-env"  # the environment wins


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[check]\nconcurency = 7\n", "[check] has no option 'concurency'"),
        ("[check]\nconcurrency = 'many'\n", "[check] concurrency: 'many' is not a whole number"),
        ("[check]\ninsecure = 'yes'\n", "[check] insecure: true or false"),
        ("[check]\nmethod = 'POST'\n", "[check] method: one of HEAD, GET"),
        ("[check]\ntimeout = [1, 2]\n", "[check] timeout: one value, not a list"),
        ("[checks]\n", "unknown table or key 'checks'"),
        ("[[group]]\nname = 'x'\n", "group 1: 'urls' must be a list of URLs"),
        ("[[group]]\nurls = ['https://a/']\ncolour = 'red'\n", "group 1: unknown key 'colour'"),
        (
            "[[group]]\nurls = ['https://a/']\nmax_ms = 'fast'\n",
            "group 1: column max_ms: 'fast' is not a number of milliseconds",
        ),
        ("this is = not toml [", "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "checker.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse_args(["check", "--config", str(config), "u.txt"])


async def test_groups_are_checked_with_their_expectations(tmp_path: Path) -> None:
    async with raw_server(SwitchableSite(b"401 Unauthorized")) as port:
        (tmp_path / "checker.toml").write_text(
            "[check]\nretries = 0\n"
            "[[group]]\n"
            'name = "api"\nexpect_status = "401"\ntags = ["api", "prod"]\n'
            f'urls = ["http://127.0.0.1:{port}/v1", "http://127.0.0.1:{port}/v2"]\n'
            "[[group]]\n"
            f'name = "site"\nurls = ["http://127.0.0.1:{port}/"]\n'
        )
        code, _, err = await checker("check", "--config", "checker.toml", cwd=tmp_path)
    assert code == 1, err
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    rows = [(r["name"], r["state"], r["tags"]) for r in report["results"]]
    api = ("api", "up", ["api", "prod"])
    assert rows == [api, api, ("site", "down", [])]
    assert report["results"][0]["source"].endswith("lists/config.csv")
    # Owner only (found by a review: a group's literal header values were
    # copied into a folder often served, readable by all).
    assert (tmp_path / "reports" / "lists" / "config.csv").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("umask", "mode"), [("077", 0o600), ("022", 0o644)])
async def test_reports_follow_the_users_umask(tmp_path: Path, umask: str, mode: int) -> None:
    # Found by a review: every report was made 0644 whatever the umask said.
    import asyncio
    import sys

    async with raw_server(SwitchableSite()) as port:
        (tmp_path / "urls.txt").write_text(f"http://127.0.0.1:{port}/\n")
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            f'umask {umask}; exec "$0" -m checker check urls.txt -q --retries 0',
            sys.executable,
            cwd=tmp_path,
        )
        async with asyncio.timeout(45):
            assert await proc.wait() == 0
    for name in ("latest.json", "latest.csv", "latest.html"):
        assert (tmp_path / "reports" / name).stat().st_mode & 0o777 == mode, name


async def test_no_list_and_no_groups_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = await checker("check", cwd=tmp_path)
    assert code == 2 and "no list" in one_error_line(err)
    (tmp_path / "c.toml").write_text("[check]\nconcurency = 1\n")
    code, _, err = await checker("check", "--config", "c.toml", "u.txt", cwd=tmp_path)
    assert code == 2 and "has no option 'concurency'" in one_error_line(err)
