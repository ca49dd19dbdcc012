"""The files in deploy/ and the runner's docs: valid, consistent with each other and the code.

(HAProxy and nginx run their configurations in test_haproxy.py and test_nginx.py.)
"""

from __future__ import annotations

import argparse
import configparser
import re
import shlex
import shutil
from pathlib import Path

import pytest

from helpers.net import TIMEOUT
from helpers.processes import REPO, run
from sockserve import cli
from sockserve.exitcodes import ExitCode
from sockserve.runner.master import HANDLED_SIGNALS, KILL_MARGIN
from sockserve.runner.settings import RUNNER_SETTINGS, RunConfig

DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service")) + sorted(SYSTEMD.glob("*.socket"))
SERVICES = [unit for unit in UNITS if unit.suffix == ".service"]
K8S = DEPLOY / "kubernetes" / "sockserve.yaml"
RUNNER_DOC = REPO / "docs" / "runner.md"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
SOCKSERVE_BIN = "/usr/local/bin/sockserve"


def read_unit(path: Path) -> configparser.ConfigParser:
    """A unit file as INI (systemd allows repeated keys; the last one wins here)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text(), source=str(path))
    return parser


def run_config(command: list[str]) -> RunConfig:
    """What ``sockserve`` would run with this command line (the program name left out)."""
    try:
        args = cli.build_parser().parse_args(command)
    except SystemExit:
        pytest.fail(f"sockserve rejects {shlex.join(command)}")
    return cli.config_from_args(args, environ={})


def exec_start(unit: Path) -> list[str]:
    words = shlex.split(read_unit(unit)["Service"]["ExecStart"].replace("%i", "7001"))
    assert words[0] == SOCKSERVE_BIN
    return words[1:]


def test_there_are_units_to_check() -> None:
    assert {unit.name for unit in UNITS} >= {
        "sockserve.service",
        "sockserve.socket",
        "sockserve@.service",
    }


def test_systemd_units_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` where there is one; the keys by hand in any case."""
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        stub = tmp_path / "sockserve"  # verify wants ExecStart's program to exist
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
        copies = []
        for unit in UNITS:
            name = unit.name.replace("@.", "@7001.")  # a template is verified as an instance
            copy = tmp_path / name
            copy.write_text(unit.read_text().replace(SOCKSERVE_BIN, str(stub)))
            copies.append(f"./{name}")
        result = run([analyze, "verify", "--man=no", *copies], cwd=tmp_path, timeout=TIMEOUT * 3)
        # It exits 0 on mere warnings (an unknown key, a bad value): those count too.
        assert (result.returncode, result.stderr) == (0, ""), result.stderr + result.stdout
    for unit in UNITS:
        parsed = read_unit(unit)
        assert "Unit" in parsed and "Install" in parsed, unit
        if unit.suffix == ".socket":
            assert parsed["Socket"]["ListenStream"]
            assert parsed["Socket"].get("Accept", "no") == "no"  # one service, one socket


@pytest.mark.parametrize("unit", SERVICES, ids=lambda unit: unit.name)
def test_service_units_stop_and_reload_the_way_the_runner_expects(unit: Path) -> None:
    service = read_unit(unit)["Service"]
    config = run_config(exec_start(unit))  # the command line is one sockserve accepts
    assert config.workers >= 1  # a master: it notifies, reloads and drains
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    # The master drains its workers; control-group would signal them directly as well.
    assert service["KillMode"] == "mixed"
    # systemd must not SIGKILL before the master is done: grace, then its kill margin.
    assert float(service["TimeoutStopSec"]) > config.grace + KILL_MARGIN
    no_restart = {int(code) for code in service["RestartPreventExitStatus"].split()}
    assert no_restart == {ExitCode.USAGE, ExitCode.IMPORT, ExitCode.NOT_FOUND, ExitCode.BAD_TARGET}


def test_the_socket_unit_is_what_the_service_listens_on() -> None:
    service = read_unit(SYSTEMD / "sockserve.service")
    assert "sockserve.socket" in service["Unit"]["Requires"].split()
    assert run_config(exec_start(SYSTEMD / "sockserve.service")).bind == []  # no --bind


def test_kubernetes_grace_period_covers_prestop_and_drain() -> None:
    text = K8S.read_text()
    [period] = re.findall(r"terminationGracePeriodSeconds: (\d+)", text)
    # A preStop sleep, if any, counts in the period too (--shutdown-delay replaces it).
    sleep = sum(int(n) for n in re.findall(r'command: \["sleep", "(\d+)"\]', text))
    block = re.search(r"command:\n((?:\s+- .+\n)+)", text)
    assert block is not None
    words = [w.strip().removeprefix("- ").strip('"') for w in block[1].splitlines()]
    assert words[0] == "sockserve"
    config = run_config(words[1:])
    assert int(period) > sleep + config.shutdown_delay + config.grace + KILL_MARGIN
    assert config.bind and config.workers >= 1
    # The readiness probe asks /healthz on the metrics port, which goes 503 for the delay.
    assert config.shutdown_delay > 0 and config.metrics_bind is not None
    assert re.search(r"readinessProbe:\n\s+httpGet:\n\s+path: /healthz", text)
    port = config.metrics_bind.rpartition(":")[2]
    assert re.search(rf"- name: metrics\n\s+containerPort: {port}\n", text)


def test_runner_doc_names_every_setting_exit_status_and_signal() -> None:
    doc = RUNNER_DOC.read_text()
    for setting in RUNNER_SETTINGS:
        assert f"`--{setting.flag}" in doc, f"docs/runner.md does not document --{setting.flag}"
        assert setting.env in doc, f"docs/runner.md does not mention {setting.env}"
    for flag in ("--config", "--check-config"):
        assert f"`{flag}" in doc
    for code in ExitCode:
        assert re.search(rf"\|\s*{code.value}\s*\|\s*`{code.name}`", doc), code
    for signum in HANDLED_SIGNALS:
        if signum.name != "SIGCHLD":
            assert signum.name in doc, signum
    for kind in ("handler", "server", "factory", "service"):
        assert kind in doc


def test_deploy_doc_points_to_every_deploy_file() -> None:
    doc = DEPLOY_DOC.read_text()
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert str(path.relative_to(REPO)) in doc, f"docs/deploy.md does not mention {path}"


def _subcommand_help(name: str) -> str:
    parser = cli.build_parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return " ".join(subparsers.choices[name].format_help().split())


def test_run_help_shows_the_default_run_uses() -> None:
    shown = re.search(r"--workers N .*?\(default: (\w+)\)", _subcommand_help("run"))
    assert shown is not None
    assert shown[1] == str(run_config(["run", "x:y"]).workers)
