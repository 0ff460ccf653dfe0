"""CONFIDE_BROKER_URL: which broker, and a Redis Cluster's nodes (app.core.broker_url)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from app.cli import _settings_errors
from app.core.broker_url import ClusterAddress, broker_kind, parse_cluster_url
from app.core.config import Settings
from app.relay.broker import InProcessBroker, create_broker
from app.relay.redis_broker import RedisBroker
from tests.fixtures.processes import run_cli


def test_each_kind_of_url() -> None:
    assert broker_kind("memory://") == "memory"
    for url in ("redis://127.0.0.1:6379/0", "rediss://h:6380", "unix:///run/redis.sock"):
        assert broker_kind(url) == "redis"
    assert broker_kind("redis+cluster://10.0.0.1:7000,10.0.0.2:7000") == "cluster"
    assert broker_kind("rediss+cluster://h:7000/0") == "cluster"


def test_a_cluster_url_reads_as_its_nodes_and_login() -> None:
    assert parse_cluster_url("redis+cluster://a:7000,b:7001/") == ClusterAddress(
        (("a", 7000), ("b", 7001))
    )
    assert parse_cluster_url("rediss+cluster://app:p%40ss%3Aword@[::1]:7000, 10.0.0.2:7002") == (
        ClusterAddress((("::1", 7000), ("10.0.0.2", 7002)), "app", "p@ss:word", tls=True)
    )
    assert parse_cluster_url("redis+cluster://:secret@h:7000") == ClusterAddress(
        (("h", 7000),), None, "secret"
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "must be memory://"),
        ("redis-cluster://h:7000", "must be memory://"),
        ("http://h:7000", "must be memory://"),
        ("redis+cluster://", "host:port"),
        ("redis+cluster://h", "host:port"),
        ("redis+cluster://h:0", "host:port"),
        ("redis+cluster://h:70000", "host:port"),
        ("redis+cluster://h:7000,", "host:port"),
        ("redis+cluster://::1:7000", "host:port"),
        ("redis+cluster://h:７０００", "host:port"),
        ("redis+cluster://h:7000/1", "database 0 only"),
        ("redis+cluster://h:7000?timeout=1", "no query"),
        ("redis+cluster://u:%FF@h:7000", "percent-encoded UTF-8"),
    ],
)
def test_a_bad_url_is_refused_saying_why(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        broker_kind(url)


hosts = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
    st.ip_addresses().map(str),
)
logins = st.one_of(st.none(), st.text(min_size=1, max_size=12))


@given(
    nodes=st.lists(st.tuples(hosts, st.integers(1, 65535)), min_size=1, max_size=5),
    username=logins,
    password=st.one_of(st.none(), st.text(max_size=12)),
    tls=st.booleans(),
)
def test_an_address_reads_back_from_its_url(
    nodes: list[tuple[str, int]], username: str | None, password: str | None, tls: bool
) -> None:
    address = ClusterAddress(tuple(nodes), username, password, tls)
    assert parse_cluster_url(address.url()) == address
    assert broker_kind(address.url()) == "cluster"


@given(st.text(max_size=60))
def test_any_text_is_a_kind_or_a_value_error(text: str) -> None:
    for url in (text, "redis+cluster://" + text, "rediss+cluster://u:pw@" + text):
        with contextlib.suppress(ValueError):
            broker_kind(url)


@given(password=st.text(min_size=6, max_size=20), hosts=st.text(max_size=20))
def test_an_error_never_repeats_the_password(password: str, hosts: str) -> None:
    address = ClusterAddress((("h", 7000),), "app", password)
    url = address.url().replace("h:7000", hosts + "/x")
    with pytest.raises(ValueError) as caught:  # noqa: PT011 (any message, without the password)
        broker_kind(url)
    assert password not in str(caught.value)


def test_create_broker_picks_the_broker_of_the_url() -> None:
    assert isinstance(create_broker("memory://"), InProcessBroker)
    assert isinstance(create_broker("redis+cluster://127.0.0.1:7000"), RedisBroker)
    with pytest.raises(ValueError, match="must be memory://"):
        create_broker("mongodb://h")


def test_settings_refuse_a_bad_url_in_one_line_without_the_password() -> None:
    password = secrets.token_urlsafe(16)
    with pytest.raises(ValidationError) as caught:
        Settings(broker_url=SecretStr(f"redis+cluster://:{password}@h:7000/3"))
    lines = _settings_errors(caught.value)
    assert lines == [
        "confide: CONFIDE_BROKER_URL: Value error, a cluster has database 0 only:"
        " end the URL with the last host:port"
    ]
    assert Settings(broker_url=SecretStr("redis+cluster://h:7000")).broker_url


def test_a_bad_url_stops_the_server_with_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CONFIDE_DATA_DIR": str(tmp_path),
        "CONFIDE_BROKER_URL": "redis+cluster://10.0.0.1",
    }
    done = run_cli(env, "serve")
    assert done.returncode == 2
    assert done.stderr == (
        "confide: CONFIDE_BROKER_URL: Value error, each cluster node must be host:port"
        " (an IPv6 address as [addr]:port)\n"
    )
