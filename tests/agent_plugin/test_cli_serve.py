"""``logsieve serve`` settings: file < environment < flags, and clear errors for bad input."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.agent_plugin.serve_config import load_serve_settings, parse_hostport
from logsieve.bundle import Bundle
from logsieve.cli.main import main
from logsieve.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serve.toml"
    path.write_text(text)
    return path


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[server]\nport = 25000\nshared_key = 'from-file'\n"
        "[upstream]\nhost = 'fluentd'\nport = 24230\n"
        "[pipeline]\nbatch_size = 8\ntext_fields = ['msg']\n",
    )
    env = {
        "LOGSIEVE_SERVER_SHARED_KEY": "from-env",
        "LOGSIEVE_UPSTREAM_PORT": "24231",
        "LOGSIEVE_PIPELINE_EVERY_VERDICT": "true",
        "LOGSIEVE_PIPELINE_HOST_FIELDS": "node, hostname",
        "LOGSIEVE_DATA": "/not/ours",  # other LOGSIEVE_ variables are ignored
    }
    s = load_serve_settings(path, env, {"server": {"shared_key": "from-flag", "host": None}})
    assert (s.server.port, s.server.shared_key, s.server.host) == (25000, "from-flag", "0.0.0.0")
    assert (s.upstream.host, s.upstream.port) == ("fluentd", 24231)
    assert s.pipeline.batch_size == 8 and s.pipeline.every_verdict is True
    assert s.pipeline.text_fields == ("msg",) and s.pipeline.host_fields == ("node", "hostname")
    assert s.pipeline.max_wait_ms == PipelineConfig().max_wait_ms  # default


@pytest.mark.parametrize(
    ("text", "env", "field"),
    [
        ("[pipeline]\nbatch_sise = 8\n", {}, "pipeline.batch_sise"),
        ("[pipelines]\nbatch_size = 8\n", {}, "pipelines"),
        ("[server]\nport = 70000\n", {}, "server.port"),
        ("[upstream]\nmode = 'zip'\n", {}, "upstream.mode"),
        ("[pipeline]\nbackend = 'cuda'\n", {}, "pipeline.backend"),
        ("", {"LOGSIEVE_PIPELINE_BATCH": "8"}, "LOGSIEVE_PIPELINE_BATCH"),
        ("", {"LOGSIEVE_SERVER_PORT": "many"}, "LOGSIEVE_SERVER_PORT"),
        ("", {"LOGSIEVE_UPSTREAM_TLS": "maybe"}, "LOGSIEVE_UPSTREAM_TLS"),
        ("[server]\nport = 24224\n[upstream]\nhost = '127.0.0.1'\n", {}, "upstream.port"),
        ("[server\n", {}, "config"),
    ],
)
def test_bad_settings_name_the_field(
    tmp_path: Path, text: str, env: dict[str, str], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_serve_settings(write(tmp_path, text), env)
    assert info.value.field == field


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="an existing TOML file"):
        load_serve_settings(tmp_path / "nope.toml")


def test_parse_hostport() -> None:
    assert parse_hostport("--listen", "0.0.0.0:24224") == ("0.0.0.0", 24224)
    assert parse_hostport("--listen", "[::1]:5") == ("::1", 5)
    for bad in ("24224", "host:", "host:x", ":1", "h:70000"):
        with pytest.raises(ConfigError):
            parse_hostport("--listen", bad)


def test_serve_cli_reports_bad_config_clearly(tiny_bundle: Bundle, tmp_path: Path) -> None:
    path = write(tmp_path, "[pipeline]\nbatch_sise = 8\n")
    runner = CliRunner()
    result = runner.invoke(
        main, ["serve", "--bundle", str(tiny_bundle.path), "--config", str(path)]
    )
    assert result.exit_code == 1
    assert "Error: pipeline.batch_sise=8: a known setting (" in result.output
    result = runner.invoke(
        main, ["serve", "--bundle", str(tiny_bundle.path), "--upstream", "fluentd"]
    )
    assert result.exit_code == 1 and "Error: --upstream='fluentd': host:port" in result.output


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another socket of this host listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("listen", "metrics", "error"),
    [
        ("127.0.0.1:{busy}", "127.0.0.1:0", "Error: server.port={busy}: a port no other process"),
        ("127.0.0.1:0", "127.0.0.1:{busy}", "Error: server.metrics_port={busy}: a port no other"),
        # TEST-NET-1 (RFC 5737): documentation only, never an address of this host.
        ("192.0.2.1:0", "127.0.0.1:0", "Error: server.host='192.0.2.1': an address of this host"),
        # .invalid (RFC 6761) never resolves.
        ("nope.invalid:0", "127.0.0.1:0", "Error: server.host='nope.invalid': a host name that"),
        ("127.0.0.1:0", "nope.invalid:0", "Error: server.metrics_host='nope.invalid': a host"),
    ],
    ids=[
        "busy-listen-port",
        "busy-metrics-port",
        "not-this-host",
        "no-such-host",
        "no-metrics-host",
    ],
)
def test_serve_start_up_faults_are_one_line_errors(
    tiny_bundle: Bundle, busy_port: int, listen: str, metrics: str, error: str
) -> None:
    args = [
        "serve", "--bundle", str(tiny_bundle.path), "--upstream", f"127.0.0.1:{_free_port()}",
        "--listen", listen.format(busy=busy_port), "--metrics", metrics.format(busy=busy_port),
    ]  # fmt: skip
    # The engine in this process: the fault is in binding, not in the engine's start.
    env = {"LOGSIEVE_PIPELINE_ENGINE_PROCESS": "false", "LOGSIEVE_SERVER_UDP_HEARTBEAT": "false"}
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # click's clean exit, not an escape
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(error.format(busy=busy_port)), result.output
