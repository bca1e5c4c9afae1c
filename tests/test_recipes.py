"""The README's recipes for shards on several machines, run as written:
GNU parallel (Debian's `parallel`, installed by .ci/run), and the Kubernetes
Indexed Job of deploy/kubernetes (validated against the Kubernetes schema,
its shell run for every index, then the merge Job's). Each ends with the
rows of one unsharded run."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.helpers import SwitchableSite, raw_server
from tests.test_cli import checker

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES = "1.37.0"


def recipe(name: str) -> str:
    """The fenced block after `<!-- recipe: NAME -->` in the README."""
    text = (ROOT / "README.md").read_text()
    after = text.split(f"<!-- recipe: {name} -->", 1)[1]
    block = after.split("```", 1)[1].split("\n", 1)[1].split("```", 1)[0]
    return block


def with_checker_on_path() -> dict[str, str]:
    """The environment with this venv's `checker` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


async def sh(script: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        script,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(60):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def rows(report: Path) -> list[tuple[str, int, str | None, str | None]]:
    data = json.loads(report.read_text())
    return [(r["url"], r["line"], r["state"], r["error"]) for r in data["results"]]


def a_list(port: int, down_port: int) -> str:
    # Distinct hosts (the shards split by host), one down, one invalid line.
    lines = [f"http://127.0.0.1:{port}/{j}" for j in range(5)]
    lines += [f"http://localhost:{port}/{j}" for j in range(5)]
    lines += [f"http://[::1]:{port}/", f"http://127.0.0.1:{down_port}/gone", "not a url"]
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(shutil.which("parallel") is None, reason="GNU parallel is not installed")
async def test_the_gnu_parallel_recipe(tmp_path: Path) -> None:
    down = SwitchableSite(b"503 Service Unavailable")
    async with raw_server(SwitchableSite()) as port, raw_server(down) as down_port:
        (tmp_path / "urls.txt").write_text(a_list(port, down_port))
        code, out = await sh(recipe("gnu-parallel"), tmp_path, with_checker_on_path())
        assert code == 1, out  # the merge's: a URL is down (the shards' 1 is no failure)
        code, _, err = await checker("check", "urls.txt", "--out", "one", "-q", cwd=tmp_path)
    assert code == 1, err
    merged = tmp_path / "reports" / "latest.json"
    assert rows(merged) == rows(tmp_path / "one" / "latest.json")
    assert json.loads(merged.read_text())["run"]["merged"] == ["1/4", "2/4", "3/4", "4/4"]


async def test_the_cron_recipe(tmp_path: Path) -> None:
    # The crontab lines' commands (after the five time fields), with /shared
    # in a temporary folder; machines 2 and 3 run machine 1's line with their
    # shard, as the README says.
    lines = [line for line in recipe("cron").splitlines() if line and not line.startswith("#")]
    check_line, merge_line = (line.split(None, 5)[5] for line in lines)
    shared = tmp_path / "shared"
    shared.mkdir()
    env = with_checker_on_path()
    down = SwitchableSite(b"503 Service Unavailable")
    async with raw_server(SwitchableSite()) as port, raw_server(down) as down_port:
        (shared / "urls.txt").write_text(a_list(port, down_port))
        for k in (1, 2, 3):
            machine = check_line.replace("1/3", f"{k}/3").replace("/shards/1", f"/shards/{k}")
            code, out = await sh(machine.replace("/shared", str(shared)), tmp_path, env)
            assert code == 1, out  # the down URL (or the invalid line): cron mails nothing
            assert out == ""
        merge = merge_line.replace("/shared", str(shared))
        code, out = await sh(merge, tmp_path, env)
        assert code == 1 and out == "", out
        code, _, err = await checker(
            "check", str(shared / "urls.txt"), "--out", "one", cwd=tmp_path
        )
        assert code == 1, err
        assert rows(shared / "reports" / "latest.json") == rows(tmp_path / "one" / "latest.json")
        # The next merge before the shards ran again: one line, which cron mails.
        code, out = await sh(merge, tmp_path, env)
    assert code == 2 and "merged already" in out and len(out.splitlines()) == 1, out


SSHD = "/usr/sbin/sshd"


@contextlib.asynccontextmanager
async def sshd(folder: Path, said: list[str]) -> AsyncIterator[str]:
    """An sshd of this test's own on 127.0.0.1 (a free port, a key of its
    own, this user only); yields the ssh command that logs in to it, and
    leaves what sshd said in `said` once stopped."""
    for name in ("host", "key"):
        keygen = await asyncio.create_subprocess_exec(
            "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)
        )
        assert await keygen.wait() == 0
    (folder / "authorized_keys").write_bytes((folder / "key.pub").read_bytes())
    with socket.socket() as probe:  # sshd takes no port 0: a free one, just before
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host'}\n"
        f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\n"
        f"AllowUsers {getpass.getuser()}\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # its privilege separation folder
    proc = await asyncio.create_subprocess_exec(
        SSHD, "-D", "-e", "-f", str(config), stderr=asyncio.subprocess.PIPE
    )
    env = dict(os.environ)
    ssh = (
        f"ssh -p {port} -i {folder / 'key'} -o StrictHostKeyChecking=no"
        " -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"
    )
    try:
        async with asyncio.timeout(10):  # until it takes a login
            while (await sh(f"{ssh} {getpass.getuser()}@127.0.0.1 true", folder, env))[0]:
                assert proc.returncode is None, "sshd did not start"
                await asyncio.sleep(0.1)
        yield ssh
    finally:
        proc.terminate()
        assert proc.stderr is not None
        said += (await proc.stderr.read()).decode(errors="replace").splitlines()
        await proc.wait()


@pytest.mark.skipif(
    shutil.which("parallel") is None or not os.path.exists(SSHD) or shutil.which("ssh") is None,
    reason="GNU parallel, or sshd and ssh (openssh-server), not installed",
)
async def test_the_gnu_parallel_recipe_over_ssh(tmp_path: Path) -> None:
    # The README's ssh recipe as written, but for its hosts: this machine, by
    # an sshd of the test's own, and /srv/checker a folder of the test's.
    shared = tmp_path / "srv-checker"
    shared.mkdir()
    script = recipe("gnu-parallel-ssh").replace("/srv/checker", str(shared))
    down = SwitchableSite(b"503 Service Unavailable")
    said: list[str] = []
    async with (
        raw_server(SwitchableSite()) as port,
        raw_server(down) as down_port,
        sshd(tmp_path, said) as ssh,
    ):
        # The remote side finds this venv's checker (the recipe wants it installed).
        login = f"--ssh '{ssh}' --sshlogin {getpass.getuser()}@127.0.0.1 --env PATH"
        assert "--sshlogin host1,host2" in script
        script = script.replace("--sshlogin host1,host2", login)
        (shared / "urls.txt").write_text(a_list(port, down_port))
        code, out = await sh(script, tmp_path, with_checker_on_path())
        assert code == 1, out  # the merge's: a URL is down
        args = ("check", str(shared / "urls.txt"), "--out", "one", "-q")
        code, _, err = await checker(*args, cwd=tmp_path)
    assert code == 1, err
    merged = shared / "reports" / "latest.json"
    assert rows(merged) == rows(tmp_path / "one" / "latest.json")
    assert json.loads(merged.read_text())["run"]["merged"] == ["1/4", "2/4", "3/4", "4/4"]
    # The shards went through ssh: a login for each job at least (and the probe's).
    assert sum("Accepted publickey" in line for line in said) >= 5, said


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_the_kubernetes_manifests_are_valid() -> None:
    docs = manifests()
    assert {d["metadata"]["name"] for d in docs} == {
        "checker-shards",
        "checker-merge",
        "checker-data",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    # The validator does catch mistakes: a misspelt field (strict mode), a
    # value of the wrong type.
    shards = next(d for d in docs if d["metadata"]["name"] == "checker-shards")
    for where, key, value in [
        (("spec",), "completionsMode", "Indexed"),
        (("spec",), "completions", "four"),
        (("spec", "template", "spec"), "volume", []),
    ]:
        broken = json.loads(json.dumps(shards))
        node = broken
        for step in where:
            node = node[step]
        node[key] = value
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES, strict=True)
    # The shard count is said twice: completions, and SHARDS for --shard.
    container = shards["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert int(env["SHARDS"]) == shards["spec"]["completions"]


def job(name: str) -> tuple[str, dict[str, str]]:
    """A Job's container script and its plain environment values."""
    doc = next(d for d in manifests() if d["metadata"]["name"] == name)
    container = doc["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return container["args"][0], env


async def test_the_indexed_job_maps_each_index_to_its_shard(tmp_path: Path) -> None:
    shards_script, shards_env = job("checker-shards")
    merge_script, merge_env = job("checker-merge")
    n = int(shards_env["SHARDS"])
    data = tmp_path / "data"  # the volume mounted at /data
    (data / "lists").mkdir(parents=True)
    down = SwitchableSite(b"503 Service Unavailable")
    async with raw_server(SwitchableSite()) as port, raw_server(down) as down_port:
        (data / "lists" / "urls.txt").write_text(a_list(port, down_port))
        for index in range(n):  # the pods, one at a time
            env = with_checker_on_path() | shards_env
            env |= {
                "JOB_COMPLETION_INDEX": str(index),
                "LIST": shards_env["LIST"].replace("/data", str(data)),
                "REPORTS": shards_env["REPORTS"].replace("/data", str(data)),
            }
            code, out = await sh(shards_script, tmp_path, env)
            assert code == 0, out  # a URL down is no failed pod
            report = json.loads(
                (data / "reports" / f"shard-{index + 1}" / "latest.json").read_text()
            )
            assert report["run"]["shard"] == f"{index + 1}/{n}"
        env = with_checker_on_path() | merge_env
        env["REPORTS"] = merge_env["REPORTS"].replace("/data", str(data))
        code, out = await sh(merge_script, tmp_path, env)
        assert code == 0, out
        args = ("check", str(data / "lists" / "urls.txt"), "--out", "one", "-q")
        code, _, err = await checker(*args, cwd=tmp_path)
    assert code == 1, err
    merged = data / "reports" / "merged" / "latest.json"
    assert rows(merged) == rows(tmp_path / "one" / "latest.json")
    assert any(state == "down" for _, _, state, _ in rows(merged))
    # A shard that fails for real (here: its list is gone) fails its pod.
    (data / "lists" / "urls.txt").unlink()
    env = with_checker_on_path() | shards_env
    env |= {
        "JOB_COMPLETION_INDEX": "0",
        "LIST": shards_env["LIST"].replace("/data", str(data)),
        "REPORTS": shards_env["REPORTS"].replace("/data", str(data)),
    }
    code, out = await sh(shards_script, tmp_path, env)
    assert code != 0 and "no such file" in out.lower(), out
