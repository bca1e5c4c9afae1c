"""`--config FILE`: a TOML file (the standard library's `tomllib`) with the
defaults of `checker check` and named groups of URLs with shared expectations.

    [check]                      # any long option of `checker check`
    concurrency = 200
    out = "/srv/checker/reports"
    format = ["csv", "json"]
    header = ["X-Env: prod"]
    notify_webhook = "https://hooks.example/checker"

    [[group]]                    # checked as one more CSV list (README)
    name = "api"
    expect_status = "401"
    max_ms = 500
    urls = ["https://api.example/v1/", "https://api.example/v2/"]

Precedence: the command line, then the CHECKER_* environment variables, then
this file, then the built-in defaults. The file is checked as a whole before
anything runs: an unknown key, a value of the wrong kind, or a bad group is
one line naming the file and the key (exit code 2).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass

from checker.expect import COLUMNS, ColumnError, from_cells


class ConfigError(Exception):
    """A config file that cannot be used (exit code 2)."""


@dataclass(frozen=True, slots=True)
class FileConfig:
    path: str
    check: dict[str, object]  # [check]: option name (dashes as underscores) -> value
    groups_csv: str | None  # [[group]]s as a CSV list, or None


def load(path: str) -> FileConfig:
    import tomllib  # only when there is a config file

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"check", "group"}
    if unknown:
        raise ConfigError(f"{path}: unknown table or key {sorted(unknown)[0]!r} (check, group)")
    check = data.get("check", {})
    if not isinstance(check, dict):
        raise ConfigError(f"{path}: [check] must be a table")
    options = {key.replace("-", "_"): value for key, value in check.items()}
    groups = data.get("group", [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ConfigError(f"{path}: [[group]] must be an array of tables")
    return FileConfig(path, options, _groups_csv(path, groups) if groups else None)


def _groups_csv(path: str, groups: list[dict[str, object]]) -> str:
    columns = [c for c in COLUMNS]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for number, group in enumerate(groups, start=1):
        where = f"{path}: group {number}"
        urls = group.get("urls")
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise ConfigError(f"{where}: 'urls' must be a list of URLs")
        cells = _cells(where, group)
        try:
            from_cells({"url": "", **cells})  # a bad cell is the file's fault: said now
        except ColumnError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for url in urls:
            writer.writerow(
                [url if column == "url" else cells.get(column, "") for column in columns]
            )
    return out.getvalue()


def _cells(where: str, group: Mapping[str, object]) -> dict[str, str]:
    cells: dict[str, str] = {}
    for key, value in group.items():
        if key == "urls":
            continue
        if key not in COLUMNS or key == "url":
            raise ConfigError(f"{where}: unknown key {key!r}")
        if isinstance(value, list) and key in ("tags", "headers"):
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {key} must be a list of strings")
            cells[key] = ";".join(str(v) for v in value)
        elif isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{where}: {key} must be a string or a number")
        else:
            cells[key] = str(value)
    return cells
