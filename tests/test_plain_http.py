"""Plain http carries the API key in clear: it is accepted only to this machine's loopback (the
emulator, the tests), or with api.allow_insecure_http; otherwise refused before anything is sent."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from batcher.api import SegmindAPI
from batcher.clock import SystemClock
from batcher.config import ApiSettings
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.errors import ConfigError, ForeignHostError
from batcher.settings_load import load_settings
from batcher.transport import Transport

from .support import API_KEY, png_data_uri

SKETCH = "66cec9a38aeef98f887211f1-v1"

FIX = "use https://; for an emulator on another machine or in a container, on a network you trust, set"


@pytest.mark.parametrize(
    "base",
    [
        "http://api.segmind.com",
        "HTTP://api.segmind.com/",
        "http://192.0.2.10:8787",
        "http://[2001:db8::1]:8787",
        "http://localhost.example.com",  # a name that starts like loopback is not loopback
        "http://127.0.0.1.nip.io:8787",
        "http://0.0.0.0:8787",
    ],
)
def test_a_plain_http_base_off_this_machine_is_refused_naming_the_variable(base: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(env={"SEGMIND_API_BASE": base, "SEGMIND_API_KEY": API_KEY})
    message = str(raised.value)
    assert message.startswith("environment variable SEGMIND_API_BASE: api.base_url: plain http to ")
    assert "would send the API key across the network unencrypted" in message
    assert FIX in message and "api.allow_insecure_http: true" in message
    assert API_KEY not in message


def test_a_plain_http_base_in_the_config_file_is_refused_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("concurrency: 4\napi:\n  base_url: http://emulator.lan:8787\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: api\.base_url: plain http to emulator\.lan would"):
        load_settings(config_path=config, env={})


@pytest.mark.parametrize(
    ("base", "config"),
    [
        ("http://127.0.0.1:8787", ""),
        ("http://127.8.9.10:8787", ""),
        ("http://[::1]:8787", ""),
        ("http://localhost:8787", ""),
        ("http://LOCALHOST:8787", ""),
        ("http://localhost.:8787", ""),  # the fully qualified name
        ("http://[::ffff:127.0.0.1]:8787", ""),  # loopback as an IPv4-mapped IPv6 address
        ("https://api.segmind.com", ""),
        ("http://192.0.2.10:8787", "api:\n  allow_insecure_http: true\n"),  # the opt-in
    ],
)
def test_loopback_https_and_the_opt_in_are_accepted(tmp_path: Path, base: str, config: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(config)
    assert load_settings(config_path=path, env={"SEGMIND_API_BASE": base}).api.base_url == base


@pytest.mark.parametrize(
    ("settings", "url", "allowed"),
    [
        # Settings built by hand skip the loader's check: the key still does not go out in clear.
        ({"base_url": "http://192.0.2.10:8787"}, "http://192.0.2.10:8787/workflows/request/r", False),
        (
            {"base_url": "http://192.0.2.10:8787", "allow_insecure_http": True},
            "http://192.0.2.10:8787/workflows/request/r",
            True,
        ),
        ({"base_url": "http://127.0.0.1:8787"}, "http://127.0.0.1:8787/workflows/request/r", True),
        # A listed host gets the key over https only, opt-in or not.
        (
            {"credential_hosts": ("poll.segmind.com",), "allow_insecure_http": True},
            "http://poll.segmind.com/workflows/request/r",
            False,
        ),
        ({"credential_hosts": ("poll.segmind.com",)}, "https://poll.segmind.com/workflows/request/r", True),
        # A host name is read without case, in the settings as in the URL.
        ({"credential_hosts": ("Poll.Segmind.COM",)}, "https://poll.segmind.com/workflows/request/r", True),
        # The API's own origin is the whole host: a look-alike that begins with it gets nothing.
        (
            {"base_url": "https://api.segmind.com"},
            "https://api.segmind.com.evil.example/workflows/request/r",
            False,
        ),
    ],
)
@pytest.mark.anyio
async def test_who_may_receive_the_key_over_plain_http(
    settings: dict[str, Any], url: str, allowed: bool
) -> None:
    async with Transport() as transport:
        api = SegmindAPI(transport, ApiSettings(**settings), SystemClock())
        assert api.may_receive_key(url) is allowed


def _address_off_loopback() -> str | None:
    """This machine's address on its way out (no packet is sent), if it has one off loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.mark.anyio
async def test_the_key_never_crosses_the_network_in_clear_even_with_settings_built_by_hand() -> None:
    """An emulator reached at this machine's network address, not loopback: with the base URL in
    settings that did not come through the loader, a submit is refused before it is sent (the
    emulator counts no request) and says why; with api.allow_insecure_http it goes."""
    address = _address_off_loopback()
    if address is None:
        pytest.skip("this machine has no network address off loopback")
    config = EmulatorConfig(render="placeholder")
    async with run_emulator(config, host="0.0.0.0") as emu, Transport() as transport:
        base = f"http://{address}:{emu.base_url.rsplit(':', 1)[1]}"
        api = SegmindAPI(transport, ApiSettings(base_url=base, api_key=API_KEY), SystemClock())
        body = {"input_image": png_data_uri()}
        with pytest.raises(ForeignHostError) as raised:
            await api.submit(SKETCH, body, job_id="j")
        assert emu.stats()["api_requests"] == 0
        assert f"refusing to send the API key over plain http to {address}" in str(raised.value)
        assert "api.allow_insecure_http" in str(raised.value)
        trusted = ApiSettings(base_url=base, api_key=API_KEY, allow_insecure_http=True)
        submitted = await SegmindAPI(transport, trusted, SystemClock()).submit(SKETCH, body, job_id="j")
        assert submitted.poll_url.startswith(base + "/") and emu.stats()["submissions"] == 1
