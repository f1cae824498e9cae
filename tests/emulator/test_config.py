"""Settings: defaults, validation messages, and the CLI flags that build them."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from batcher.emulator import EmulatorConfig
from batcher.emulator.cli import add_arguments, config_from_args, parse_rate
from batcher.emulator.config import field_names
from batcher.errors import ConfigError
from batcher.settings_load import load_settings


def test_defaults_are_a_well_behaved_unlimited_account() -> None:
    config = EmulatorConfig()
    assert (config.seed, config.api_key, config.rate_limit, config.credits, config.workers) == (
        0,
        None,
        None,
        None,
        None,
    )
    assert (config.error_rate, config.lost_rate, config.drop_rate, config.slow_rate, config.fail_rate) == (
        0,
    ) * 5
    assert (config.duration_median, config.duration_spread, config.duration_shape) == (2.0, 0.3, "lognormal")
    assert (config.rate_header, config.output_shape, config.render) == ("reset-at-utc", "list", "real")


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EmulatorConfig().seed = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("settings", "key", "fix"),
    [
        ({"error_rate": 1.5}, "error_rate", "between 0 and 1"),
        ({"fail_rate": -0.1}, "fail_rate", "between 0 and 1"),
        ({"duration_median": -1.0}, "duration_median", "0 or more"),
        ({"duration_median": float("nan")}, "duration_median", "0 or more"),
        ({"rate_limit": 0.0}, "rate_limit", "positive"),
        ({"rate_period": 0.0}, "rate_period", "positive"),
        ({"rate_burst": 0}, "rate_burst", "1 or more"),
        ({"rate_header": "x-retry"}, "rate_header", "retry-after-seconds"),
        ({"duration_shape": "uniform"}, "duration_shape", "lognormal, bimodal"),
        ({"output_shape": "dict"}, "output_shape", "list, flat, parsed"),
        ({"render": "fast"}, "render", "real, placeholder"),
        ({"workers": 0}, "workers", "1 or more"),
        ({"credits": -5.0}, "credits", "0 or more"),
        ({"record_ttl": 0.0}, "record_ttl", "positive"),
        ({"api_key": " "}, "api_key", "non-empty"),
        ({"output_host": "http://x/"}, "output_host", "bare hostname"),
        ({"failed_http_status": 99}, "failed_http_status", "422"),
        ({"failed_submit_rate": 2.0}, "failed_submit_rate", "between 0 and 1"),
        ({"credits_header": "1\r\nx-evil: 1"}, "credits_header", "printable ASCII"),
        ({"poll_origin": "other-host.test:1234"}, "poll_origin", "scheme://host[:port]"),
        ({"poll_origin": "ftp://other-host.test"}, "poll_origin", "scheme://host[:port]"),
        ({"poll_origin": "http://other-host.test/api"}, "poll_origin", "scheme://host[:port]"),
        ({"poll_origin": "http://other-host.test:99999"}, "poll_origin", "scheme://host[:port]"),
        ({"state_dir": " "}, "state_dir", "give a folder"),
        ({"auth_header": "authorization"}, "auth_header", "either, x-api-key, bearer"),
        # Every /assets/ URL answered 404, and each job given one failed "could not fetch".
        ({"assets_dir": "no/such/folder"}, "assets_dir", "existing folder"),
    ],
)
def test_invalid_settings_name_the_key_and_the_fix(settings: dict[str, object], key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        EmulatorConfig(**settings)  # type: ignore[arg-type]
    assert caught.value.key == f"emulator.{key}"
    assert fix in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50/min", (50.0, 60.0)),
        ("5/s", (5.0, 1.0)),
        ("1000/h", (1000.0, 3600.0)),
        ("12", (12.0, 60.0)),
        ("2.5 / second", (2.5, 1.0)),
    ],
)
def test_parse_rate(text: str, expected: tuple[float, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["fast", "5/fortnight", "0/min", "-1/s", ""])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_rate(text)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_no_flags_give_the_default_config_and_the_documented_address() -> None:
    args = _parse()
    assert config_from_args(args) == EmulatorConfig()
    assert (args.host, args.port, args.speed) == ("127.0.0.1", 8787, 1.0)


def test_flags_reach_the_config() -> None:
    args = _parse(
        "--seed",
        "9",
        "--api-key",
        "secret",
        "--rate-limit",
        "5/s",
        "--burst",
        "2",
        "--rate-header",
        "none",
        "--error-rate",
        "0.1",
        "--lost-rate",
        "0.2",
        "--slow-rate",
        "0.3",
        "--slow-seconds",
        "4",
        "--drop-rate",
        "0.05",
        "--fail-rate",
        "0.5",
        "--duration-median",
        "3",
        "--duration-spread",
        "0",
        "--duration-shape",
        "bimodal",
        "--workers",
        "4",
        "--credits",
        "10",
        "--record-ttl",
        "60",
        "--output-shape",
        "flat",
        "--render",
        "placeholder",
        "--output-host",
        "localhost",
        "--forbidden-key",
        "bad",
        "--polls-free",
    )
    config = config_from_args(args)
    assert (config.seed, config.api_key, config.rate_limit, config.rate_period, config.rate_burst) == (
        9,
        "secret",
        5.0,
        1.0,
        2,
    )
    assert (config.error_rate, config.lost_rate, config.slow_rate, config.drop_rate) == (0.1, 0.2, 0.3, 0.05)
    assert (config.fail_rate, config.duration_median, config.duration_spread) == (0.5, 3.0, 0.0)
    assert (config.duration_shape, config.workers, config.credits, config.record_ttl) == (
        "bimodal",
        4,
        10.0,
        60.0,
    )
    assert (config.output_shape, config.render, config.output_host) == ("flat", "placeholder", "localhost")
    assert (config.forbidden_keys, config.rate_limit_polls, config.rate_header) == (("bad",), False, "none")


def test_the_memory_and_poll_origin_flags_reach_the_config() -> None:
    args = _parse("--state-dir", "runs/emu", "--poll-origin", "http://other-host.test:1234")
    config = config_from_args(args)
    assert (config.state_dir, config.poll_origin) == ("runs/emu", "http://other-host.test:1234")


def test_the_output_host_budget_flag_reaches_the_config() -> None:
    config = config_from_args(_parse("--output-rate-limit", "10/s", "--rate-limit", "50/min"))
    assert (config.output_rate_limit, config.output_rate_period) == (10.0, 1.0)
    assert (config.rate_limit, config.rate_period) == (50.0, 60.0)
    assert config_from_args(_parse()).output_rate_limit is None


@pytest.mark.parametrize(
    ("yaml_text", "flags"),
    [
        ("rate_limit: 50/min", ["--rate-limit", "50/min"]),
        ("rate_limit: 5/s", ["--rate-limit", "5/s"]),
        ("rate_limit: 2.5 / second\n  rate_period: 1", ["--rate-limit", "2.5/s"]),
        ("output_rate_limit: 10/s", ["--output-rate-limit", "10/s"]),
        (
            "output_rate_limit: 1000/h\n  rate_limit: 600",
            ["--output-rate-limit", "1000/h", "--rate-limit", "600"],
        ),
        ("rate_limit: '12'", ["--rate-limit", "12"]),  # a bare number: per rate_period, 60 s
    ],
)
def test_a_config_file_takes_the_rate_as_the_flag_writes_it(
    tmp_path: Path, yaml_text: str, flags: list[str]
) -> None:
    """``emulator: rate_limit: 50/min`` in a run's config was refused ("expected a finite number");
    it sets rate_limit and rate_period as ``--rate-limit 50/min`` does (output_rate_limit too)."""
    config = tmp_path / "c.yaml"
    config.write_text(f"emulator:\n  {yaml_text}\n")
    settings = load_settings(config_path=config)
    assert EmulatorConfig(**settings.emulator) == config_from_args(_parse(*flags))


def test_every_setting_has_a_flag() -> None:
    dests = set(vars(_parse()))
    # rate_period travels inside --rate-limit ("5/s"), output_rate_period inside --output-rate-limit.
    assert set(field_names()) - dests == {"rate_period", "output_rate_period"}


def test_a_bad_flag_value_exits_2_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    from batcher.emulator.cli import main

    assert main(_parse("--error-rate", "2")) == 2
    err = capsys.readouterr().err
    assert err == "batcher emulator: --error-rate: invalid value 2.0 (give a probability between 0 and 1)\n"


def test_every_setting_is_named_by_a_flag_the_parser_has() -> None:
    """A flag's mistake names the flag (``--burst``, not ``emulator.rate_burst``): every
    setting's flag exists."""
    from batcher.emulator.cli import flag_of

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {flag for action in parser._actions for flag in action.option_strings}
    missing = [name for name in field_names() if flag_of(f"emulator.{name}") not in flags]
    assert not missing, missing


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "bad port '70000'"),
        (["--port", "-1"], "bad port '-1'"),
        (["--speed", "nan"], "bad speed 'nan'"),
        (["--speed", "inf"], "bad speed 'inf'"),
        (["--speed", "0"], "bad speed '0'"),
    ],
)
def test_a_port_out_of_range_or_a_speed_that_is_no_rate_is_refused_by_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--port 70000`` ended in an OverflowError traceback from the socket layer (exit 1);
    ``--speed nan`` and ``inf`` were taken, and made a clock whose time is NaN or stands still."""
    with pytest.raises(SystemExit) as exited:
        _parse(*argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
