"""The fleet's settings: defaults, the documented sample, and bad values as configuration errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from relay_lang.errors import RelayError
from relay_workers.settings import ConfigurationError, celery_config, load

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "config" / "relay.env.example"
ASSIGNMENT = re.compile(r"^(RELAY_\w+)=(.*)$")


def sample() -> dict[str, str]:
    """The variables config/relay.env.example sets (its uncommented lines)."""
    return {m[1]: m[2] for line in SAMPLE.read_text().splitlines() if (m := ASSIGNMENT.match(line))}


def test_defaults() -> None:
    s = load({})
    assert (s.broker_url, s.result_backend, s.store_url) == (
        "redis://localhost:6379/0", "redis://localhost:6379/0", "redis://localhost:6379/2")
    assert (s.job_time_limit, s.lease_ttl, s.host_ttl, s.heartbeat, s.max_restarts, s.restart_period,
            s.max_attempts, s.output_limit, s.host_max_memory_mib, s.supervise_every, s.max_memory_kib) == (
        60, 6, 8, 1, 5, 60, 3, 1_000_000, 2048, 2, 1_048_576)
    assert load({"RELAY_BROKER_URL": "amqp://guest@rabbit//"}).result_backend == "redis://localhost:6379/1"
    assert load({"RELAY_HEARTBEAT": "", "RELAY_OUTPUT_LIMIT": "2e6"}) == replace(load({}), output_limit=2_000_000)


def test_the_sample_file_holds_the_defaults() -> None:
    values = sample()
    fleet = {k: v for k, v in values.items() if k not in ("RELAY_MEMORY_LIMIT", "RELAY_MAX_DEPTH")}
    assert load(fleet) == load({})
    assert (values["RELAY_MEMORY_LIMIT"], values["RELAY_MAX_DEPTH"]) == ("1G", "10000")


def test_the_sample_file_names_every_variable() -> None:
    """Every RELAY_* variable the code, compose.yaml and the tests read is in config/relay.env.example."""
    text = SAMPLE.read_text()
    sources = [*ROOT.glob("relay_lang/**/*.py"), *ROOT.glob("relay_workers/**/*.py"), *ROOT.glob("tests/**/*.py"),
               ROOT / "compose.yaml"]
    used = {name for path in sources for name in re.findall(r"\bRELAY_[A-Z_]*[A-Z]\b", path.read_text())}
    assert used and {name for name in used if not re.search(rf"\b{name}\b", text)} == set()


def test_celery_config_carries_relay_settings() -> None:
    config = celery_config(load({"RELAY_HEARTBEAT": "0.5", "RELAY_STORE_URL": "redis://store:6379/2"}))
    assert (config["relay_heartbeat"], config["relay_store_url"]) == (0.5, "redis://store:6379/2")
    assert config["broker_transport"] == "relay_workers.transport:Transport"
    assert "broker_transport" not in celery_config(load({"RELAY_BROKER_URL": "amqp://guest@rabbit//"}))


@pytest.mark.parametrize("name, value, problem", [
    ("RELAY_HEARTBEAT", "abc", "is not a number"),
    ("RELAY_HEARTBEAT", "0", "must be a positive number"),
    ("RELAY_LEASE_TTL", "-1", "must be a positive number"),
    ("RELAY_HOST_TTL", "inf", "must be a positive number"),
    ("RELAY_JOB_TIME_LIMIT", "nan", "must be a positive number"),
    ("RELAY_MAX_RESTARTS", "2.5", "must be a whole number"),
    ("RELAY_MAX_MEMORY_KIB", "1G", "is not a number"),
])
def test_a_bad_value_is_a_configuration_error_naming_it(name: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load({name: value})
    err = caught.value
    assert isinstance(err, RelayError) and err.kind == "configuration error"
    assert (err.variable, err.value, err.message) == (name, value, f"{name}={value!r} {problem}")
    assert str(err) == f"configuration error: {name}={value!r} {problem}"


def test_relay_client_raises_on_a_bad_setting_and_the_process_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from relay_workers import RelayClient
    monkeypatch.setenv("RELAY_HEARTBEAT", "abc")
    with pytest.raises(ConfigurationError, match=r"RELAY_HEARTBEAT='abc' is not a number"):
        RelayClient()
    monkeypatch.delenv("RELAY_HEARTBEAT")
    RelayClient("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/1", "redis://127.0.0.1:1/2").close()  # no connection made


def relay(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relay_workers.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT), **env))


@pytest.mark.parametrize("command", [["servers"], ["call", "x", "y"], ["gateway", "--insecure"]])
def test_the_cli_prints_a_bad_setting_on_one_line_and_exits_2(command: list[str]) -> None:
    result = relay(*command, RELAY_HEARTBEAT="abc")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "relay: configuration error: RELAY_HEARTBEAT='abc' is not a number\n"


def test_a_bad_setting_is_raised_where_settings_are_read_never_an_exit_at_import() -> None:
    """Importing the settings or the CLI reads nothing; the worker's app reads them as it is made (so
    `celery -A relay_workers worker` stops at start-up), raising the error, not exiting the process."""
    def python(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                              env=dict(os.environ, RELAY_HEARTBEAT="abc", PYTHONPATH=str(ROOT)))
    assert python("import relay_workers.settings, relay_workers.cli").returncode == 0
    caught = python("from relay_workers.settings import ConfigurationError\n"
                    "try:\n    import relay_workers.celery\nexcept ConfigurationError as err:\n    print(err.variable)")
    assert (caught.returncode, caught.stdout) == (0, "RELAY_HEARTBEAT\n"), caught.stderr
