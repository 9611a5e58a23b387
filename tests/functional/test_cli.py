"""The command line as a user meets it: real subprocesses in an empty folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from passgate.cli import build_parser
from tests.servers import free_port

PREFIX = "passgate: invalid configuration: "


def clean_env(**extra: str) -> dict[str, str]:
    """The environment less any PASSGATE_* of the caller's, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSGATE_")}
    return {**env, **extra}


def run(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "passgate.cli", *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


def start_serve(cwd: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "passgate.cli", "serve", "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env if env is not None else clean_env(),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"serve did not come up: {proc.stderr.read()!r}")  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[bytes]) -> bytes:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    return proc.stderr.read() if proc.stderr else b""  # type: ignore[union-attr]


def all_commands() -> list[list[str]]:
    """Every command of the parser, groups expanded (`client list`, `user role`, ...)."""
    import argparse

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [prefix]
        out: list[list[str]] = []
        seen: set[int] = set()
        for name, child in subs[0].choices.items():
            if id(child) in seen:
                continue  # an alias (doctor = check)
            seen.add(id(child))
            out += walk(child, [*prefix, name])
        return out

    return walk(build_parser(), [])


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["serve", "--help"],
        ["client", "create", "--help"],
        ["apikey", "create", "--help"],
        ["worker", "--help"],
        ["demo", "--help"],
        ["check", "--help"],
        ["destination", "unlock", "--help"],
    ],
)
def test_help_helps(args: list[str], tmp_path: Path) -> None:
    out = run(args, tmp_path)
    assert out.returncode == 0
    assert "usage: passgate" in out.stdout


@pytest.mark.parametrize("command", all_commands(), ids=" ".join)
def test_every_command_says_what_it_does_with_an_example(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from passgate.cli import main

    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: passgate {' '.join(command)}" in text
    description = text.split("\n\n")[1]
    assert len(description) > 20, text  # a sentence, not just the usage line
    example = text.split("example:\n", 1)[1].splitlines()[0]
    assert "passgate " in example, text


def test_client_and_key_creation_print_json(tmp_path: Path) -> None:
    created = run(["client", "create", "--name", "Acme", "--country", "gb", "--json"], tmp_path)
    assert created.returncode == 0, created.stderr
    client = json.loads(created.stdout)
    assert client["clientId"].startswith("cl_") and client["country"] == "GB"
    key = run(["apikey", "create", "--client", client["clientId"], "--scope", "admin", "--json"], tmp_path)
    assert key.returncode == 0, key.stderr
    assert json.loads(key.stdout)["apiKey"].startswith("pgk_")
    assert (tmp_path / "passgate.db").exists()  # the embedded default
    missing = run(["apikey", "create", "--client", "cl_nope", "--json"], tmp_path)
    assert (
        missing.returncode == 1
        and missing.stderr == "passgate: no client 'cl_nope' (passgate client list shows them)\n"
    )
    bad = run(["client", "create", "--name", "X", "--country", "USA"], tmp_path)
    assert bad.returncode == 1 and "two-letter" in bad.stderr and "Traceback" not in bad.stderr


# -- configuration mistakes: one line each, exit 2, before anything runs -------------------------------

MISTAKES = {
    "production without secret keys": (
        {"PASSGATE_ENVIRONMENT": "production"},
        ["PASSGATE_SECRET_KEYS: must be set in production"],
    ),
    "a short key": (
        {"PASSGATE_SECRET_KEYS": "0123456789"},
        ["PASSGATE_SECRET_KEYS: every key must be at least 32"],
    ),
    "a misspelt provider": (
        {"PASSGATE_SMS_PROVIDER": "twillio"},
        [
            "PASSGATE_SMS_PROVIDER: unknown SMS provider 'twillio' (did you mean twilio?); the providers are dev, twilio and http"
        ],
    ),
    "a bad SMTP URL": ({"PASSGATE_SMTP_URL": "smtp//bad"}, ["PASSGATE_SMTP_URL: must be smtp://"]),
    "Twilio without credentials": (
        {"PASSGATE_SMS_PROVIDER": "twilio"},
        [
            "PASSGATE_TWILIO_ACCOUNT_SID: must be set",
            "PASSGATE_TWILIO_AUTH_TOKEN: must be set",
            "PASSGATE_TWILIO_FROM: must be set",
        ],
    ),
    "a database URL of another kind": (
        {"PASSGATE_DATABASE_URL": "mysql://root@localhost/passgate"},
        ["PASSGATE_DATABASE_URL: must be sqlite:///"],
    ),
    "a public URL without scheme": (
        {"PASSGATE_PUBLIC_URL": "passgate.example.com"},
        ["PASSGATE_PUBLIC_URL: must be an http:// or https:// URL"],
    ),
    "a retry schedule with a word": (
        {"PASSGATE_WEBHOOK_RETRY_SECONDS": "5,soon"},
        ["PASSGATE_WEBHOOK_RETRY_SECONDS: 'soon' is not a number of seconds"],
    ),
    "an unknown log level": ({"PASSGATE_LOG_LEVEL": "chatty"}, ["PASSGATE_LOG_LEVEL: must be one of DEBUG"]),
}


def assert_refused(out: subprocess.CompletedProcess[str], expected: list[str], cwd: Path) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == len(expected), out.stderr
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(PREFIX + start), line
    assert out.stdout == ""
    assert not (cwd / "passgate.db").exists()  # refused before any migration
    assert not (cwd / ".passgate").exists()


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_serve_refuses_each_mistake_in_one_line(mistake: str, tmp_path: Path) -> None:
    env, expected = MISTAKES[mistake]
    assert_refused(run(["serve", "--port", str(free_port())], tmp_path, clean_env(**env)), expected, tmp_path)


@pytest.mark.parametrize(
    "command",
    [
        ["worker"],
        ["migrate"],
        ["demo"],
        ["check"],
        ["client", "list", "--json"],
        ["client", "create", "--name", "X"],
        ["user", "list"],
        ["messages", "list"],
        ["destination", "unlock", "--client", "cl_x", "--email", "jo@example.com"],
    ],
    ids=" ".join,
)
def test_every_command_refuses_a_mistake_before_it_runs(command: list[str], tmp_path: Path) -> None:
    env = {"PASSGATE_SMS_PROVIDER": "twillio", "PASSGATE_SMTP_URL": "smtp//bad"}
    assert_refused(
        run(command, tmp_path, clean_env(**env), timeout=30),
        ["PASSGATE_SMTP_URL:", "PASSGATE_SMS_PROVIDER:"],
        tmp_path,
    )


def test_a_database_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"postgresql://passgate:db-password-9@127.0.0.1:{port}/passgate"
    for command in (["migrate"], ["serve", "--port", str(free_port())], ["client", "list"]):
        out = run(command, tmp_path, clean_env(PASSGATE_DATABASE_URL=url), timeout=30)
        assert out.returncode == 1, out.stderr
        [line] = out.stderr.splitlines()
        assert line.startswith(f"passgate: cannot use the database postgresql://***@127.0.0.1:{port}/passgate: ")
        assert "Connection refused" in line and "db-password-9" not in line


def test_keys_generate_prints_a_key_production_accepts(tmp_path: Path) -> None:
    out = run(["keys", "generate"], tmp_path)
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert len(key) == 64 and out.stdout == key + "\n"
    # The key makes a production configuration valid: migrate runs.
    env = clean_env(PASSGATE_ENVIRONMENT="production", PASSGATE_SECRET_KEYS=key)
    migrated = run(["migrate", "--json"], tmp_path, env)
    assert migrated.returncode == 0 and json.loads(migrated.stdout) == {"status": "ok"}, migrated.stderr
    # Works even while the rest of the configuration is wrong: it is how a key gets made.
    broken = run(["keys", "generate", "--json"], tmp_path, clean_env(PASSGATE_ENVIRONMENT="production"))
    assert broken.returncode == 0 and len(json.loads(broken.stdout)["secretKey"]) == 64


# -- serve: the port and the links -----------------------------------------------------------------------


def test_serve_answers_on_the_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    proc = start_serve(tmp_path, port)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/dev/inbox").status_code == 200
        assert (tmp_path / ".passgate" / "secret_key").exists()  # generated dev secret
    finally:
        stderr = stop(proc)
    assert proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    assert b"Traceback" not in stderr
    assert f"Passgate serving on http://127.0.0.1:{port}".encode() in stderr


def test_links_follow_the_port_when_no_public_url_is_set(tmp_path: Path) -> None:
    port = free_port()
    client = json.loads(run(["client", "create", "--name", "Acme", "--json"], tmp_path).stdout)
    key = json.loads(run(["apikey", "create", "--client", client["clientId"], "--json"], tmp_path).stdout)
    proc = start_serve(tmp_path, port)
    try:
        base = f"http://127.0.0.1:{port}"
        token = httpx.post(
            f"{base}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client["clientId"], key["apiKey"]),
        ).json()["access_token"]
        decision = httpx.post(
            f"{base}/login/v2",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "inquiryId": "inq1",
                "deviceSessionId": "dev12345",
                "person": {"emailAddress": "jo@example.com"},
                "account": {"id": "acct-1", "username": "jo"},
                "strategy": {"mfaTemplateName": "email-link"},
            },
        ).json()
        assert decision.get("decision") == "CHALLENGE", decision
        deadline = time.monotonic() + 15
        items: list[dict[str, str]] = []
        while not items and time.monotonic() < deadline:
            items = httpx.get(f"{base}/dev/inbox", headers={"Accept": "application/json"}).json()["items"]
            time.sleep(0.1)
        assert items, "the email never reached the dev inbox"
        assert items[0]["link"].startswith(f"{base}/v/"), items[0]["link"]
        assert f":{port}/v/" in items[0]["text"]
    finally:
        stop(proc)


def test_a_taken_port_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = run(["serve", "--port", str(port)], tmp_path, timeout=30)
    assert out.returncode == 2
    assert out.stderr == f"passgate: port {port} is in use on 127.0.0.1; choose another with --port\n"
    assert not (tmp_path / "passgate.db").exists()  # no migration ran either


def test_a_port_out_of_range_is_refused_by_the_parser(tmp_path: Path) -> None:
    out = run(["serve", "--port", "70000"], tmp_path)
    assert out.returncode == 2 and "70000 is not a port number" in out.stderr


# -- output to a reader that goes away -------------------------------------------------------------------


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    for n in range(3):
        assert run(["client", "create", "--name", f"Shop {n}"], tmp_path).returncode == 0
    # The reader is gone before the command writes anything, as with `| head -c1` on a long listing.
    proc = subprocess.Popen(
        [sys.executable, "-m", "passgate.cli", "client", "list", "--json"],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.wait(30)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert stderr == ""
    # And as a person types it.
    shell = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m passgate.cli client list --json | head -c1"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.stdout == "{" and shell.stderr == ""


# -- demo -----------------------------------------------------------------------------------------------


def test_demo_reaches_verified_and_removes_its_folder(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = run(["demo", "--json"], tmp_path, clean_env(TMPDIR=str(scratch)), timeout=90)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "VERIFIED" and result["nextDecision"] == "ALLOW" and result["ownServer"]
    assert "dataDir" not in result
    assert list(scratch.iterdir()) == []  # its temporary folder is gone
    assert not (tmp_path / "passgate.db").exists()  # nothing of the caller's was touched


def test_demo_keeps_a_folder_it_was_given(tmp_path: Path) -> None:
    out = run(["demo", "--json", "--data-dir", str(tmp_path / "demo")], tmp_path, timeout=90)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "VERIFIED" and result["dataDir"] == str(tmp_path / "demo")
    assert (tmp_path / "demo" / "demo.db").exists()


def test_demo_uses_a_running_server(tmp_path: Path) -> None:
    port = free_port()
    proc = start_serve(tmp_path, port)
    try:
        scratch = tmp_path / "tmp"
        scratch.mkdir()
        env = clean_env(PASSGATE_PUBLIC_URL=f"http://127.0.0.1:{port}", TMPDIR=str(scratch))
        out = run(["demo", "--json"], tmp_path, env, timeout=90)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["status"] == "VERIFIED" and result["server"] == f"http://127.0.0.1:{port}"
        assert result["ownServer"] is False
        assert list(scratch.iterdir()) == []
        # The demo's client lives in the server's database, and its email in the server's dev inbox.
        clients = json.loads(run(["client", "list", "--json"], tmp_path).stdout)["items"]
        assert [c["clientId"] for c in clients] == [result["clientId"]]
        inbox = httpx.get(f"http://127.0.0.1:{port}/dev/inbox", headers={"Accept": "application/json"}).json()
        assert [m["clientId"] for m in inbox["items"]] == [result["clientId"]]
        # Told by text, a person sees which server it used.
        again = run(["demo"], tmp_path, env, timeout=90)
        assert again.returncode == 0 and f"Using the Passgate at http://127.0.0.1:{port}" in again.stdout
    finally:
        stop(proc)


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker"]])
def test_the_http_sms_gateway_needs_its_secret_in_production(command: list[str], tmp_path: Path) -> None:
    env = clean_env(
        PASSGATE_ENVIRONMENT="production",
        PASSGATE_SECRET_KEYS="k" * 40,
        PASSGATE_SMTP_URL="smtp://127.0.0.1:25",
        PASSGATE_SMS_PROVIDER="http",
        PASSGATE_SMS_HTTP_URL="https://gateway.example/sms",
    )
    out = run(command, tmp_path, env=env)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("passgate: invalid configuration: PASSGATE_SMS_HTTP_SECRET: ")
    assert not (tmp_path / "passgate.db").exists()


@pytest.mark.parametrize(
    ("extra", "args", "expected"),
    [
        ({}, ["--workers", "2"], "--workers 2 needs PostgreSQL"),
        ({"PASSGATE_API_WORKERS": "3"}, [], "--workers 3 needs PostgreSQL"),
        (
            {"PASSGATE_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"},
            ["--workers", "2"],
            "--workers 2 needs PASSGATE_REDIS_URL: without Redis each process keeps its own rate limits",
        ),
    ],
)
def test_several_api_processes_need_a_shared_database_and_redis(
    extra: dict[str, str], args: list[str], expected: str, tmp_path: Path
) -> None:
    # Refused before the port is taken or anything migrated: one line, exit 2. (A run that starts them is
    # tests/functional/test_several_processes.py.)
    out = run(["serve", "--port", str(free_port()), *args], tmp_path, clean_env(**extra))
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [out.stderr.strip()]
    assert out.stderr.startswith("passgate: " + expected), out.stderr
    assert not (tmp_path / "passgate.db").exists()


def test_serve_workers_takes_only_a_sensible_number(tmp_path: Path) -> None:
    out = run(["serve", "--workers", "0"], tmp_path)
    assert out.returncode == 2 and "choose 1 to 64" in out.stderr, out.stderr
