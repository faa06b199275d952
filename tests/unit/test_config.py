"""fleetd configuration: layering and validation, as tables."""

from __future__ import annotations

import pytest

from fleetpy.config import Config, ConfigError, load, parse_conf_file


@pytest.mark.parametrize(
    ("file_text", "environ", "flags", "expected"),
    [
        pytest.param(None, {}, {}, Config(), id="defaults"),
        pytest.param(
            'etcd_servers=["http://10.0.0.1:2379","http://10.0.0.2:2379"]\n',
            {},
            {},
            Config(etcd_servers=("http://10.0.0.1:2379", "http://10.0.0.2:2379")),
            id="file-json-list",
        ),
        pytest.param(
            'metadata="region=us-west, disk=ssd"\n# comment\n\nagent_ttl=10s\n',
            {},
            {},
            Config(metadata={"region": "us-west", "disk": "ssd"}, agent_ttl=10),
            id="file-quoted-metadata-and-ttl",
        ),
        pytest.param(
            "public_ip=1.1.1.1\n",
            {"FLEET_PUBLIC_IP": "2.2.2.2"},
            {},
            Config(public_ip="2.2.2.2"),
            id="env-beats-file",
        ),
        pytest.param(
            "public_ip=1.1.1.1\n",
            {"FLEET_PUBLIC_IP": "2.2.2.2"},
            {"public_ip": "3.3.3.3"},
            Config(public_ip="3.3.3.3"),
            id="flag-beats-env",
        ),
        pytest.param(
            None,
            {"FLEET_ETCD_SERVERS": "http://a:1,http://b:2", "FLEET_ETCD_KEY_PREFIX": "/x"},
            {},
            Config(etcd_servers=("http://a:1", "http://b:2"), etcd_key_prefix="/x/"),
            id="env-comma-list-and-prefix-slash",
        ),
        pytest.param(
            None,
            {},
            {"engine_reconcile_interval": "500ms", "etcd_request_timeout": "2"},
            Config(engine_reconcile_interval=0.5, etcd_request_timeout=2.0),
            id="durations",
        ),
        pytest.param(None, {"FLEET_PUBLIC_IP": ""}, {}, Config(), id="empty-env-ignored"),
    ],
)
def test_load(
    file_text: str | None, environ: dict[str, str], flags: dict[str, str], expected: Config
) -> None:
    assert load(file_text, environ, flags) == expected


@pytest.mark.parametrize(
    ("file_text", "environ", "message"),
    [
        pytest.param("bogus=1\n", {}, "unknown setting 'bogus'", id="unknown-key-file"),
        pytest.param(None, {"FLEET_NOPE": "1"}, "environment: unknown setting 'nope'", id="env"),
        pytest.param("agent_ttl=soon\n", {}, "agent_ttl: 'soon' is not a duration", id="ttl"),
        pytest.param("agent_ttl=0\n", {}, "below 1s", id="ttl-zero"),
        pytest.param("metadata=region\n", {}, "'region' is not key=value", id="metadata"),
        pytest.param("etcd_servers=[]\n", {}, "at least one endpoint", id="no-servers"),
        pytest.param("etcd_servers=[1,2]\n", {}, "not a list of strings", id="bad-list"),
        pytest.param("etcd_key_prefix=x\n", {}, "must start with /", id="prefix"),
        pytest.param("just words\n", {}, "line 1: expected key=value", id="syntax"),
    ],
)
def test_load_rejects(file_text: str | None, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load(file_text, environ, {})


def test_deploy_example_parses_to_defaults() -> None:
    """Every line of the shipped example is commented out: it means the defaults."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "deploy" / "fleet.conf").read_text()
    assert parse_conf_file(text) == {}
    known = set(Config.__dataclass_fields__)
    uncommented = "\n".join(
        line[2:]
        for line in text.splitlines()
        if line.startswith("# ") and line[2:].split("=", 1)[0] in known
    )
    config = load(uncommented, {}, {})
    assert config.api_tcp == "0.0.0.0:49153"
    assert config.metadata == {"region": "us-west", "disk": "ssd"}


def test_token_limit_is_fleets_page_size_setting() -> None:
    from fleetpy.config import apply

    assert Config().token_limit == 100
    assert apply(Config(), {"token_limit": "25"}, "fleet.conf").token_limit == 25
    for bad in ("0", "70000", "ten"):
        with pytest.raises(ConfigError, match="token_limit"):
            apply(Config(), {"token_limit": bad}, "fleet.conf")
