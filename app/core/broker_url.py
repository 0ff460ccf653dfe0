"""`CONFIDE_BROKER_URL`: which broker, and where a Redis Cluster is.

- `memory://`: the in-process broker (one instance).
- `redis://`, `rediss://` (TLS), `unix://`: one Redis, as redis-py reads it.
- `redis+cluster://[user:password@]host:port[,host:port...]` and
  `rediss+cluster://...` (TLS): a Redis Cluster, found from any of the listed
  nodes (decision note 0010). The user and password are percent-decoded; the
  path may be empty, `/` or `/0` (a cluster has database 0 only); a query is
  refused.

Errors are `ValueError`s whose text never repeats the URL: it may carry a
password.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote

BrokerKind = Literal["memory", "redis", "cluster"]

_SINGLE = ("redis://", "rediss://", "unix://")
_CLUSTER = {"redis+cluster://": False, "rediss+cluster://": True}

EXPECTED = (
    "must be memory://, redis://, rediss://, unix://, "
    "or a cluster: redis+cluster://host:port[,host:port...] (rediss+cluster:// for TLS)"
)


@dataclass(frozen=True)
class ClusterAddress:
    """Where a Redis Cluster is: nodes to start from, and how to log in."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def url(self) -> str:
        """The URL that reads back as this address."""
        scheme = "rediss+cluster" if self.tls else "redis+cluster"
        auth = ""
        if self.username is not None or self.password is not None:
            auth = quote(self.username or "", safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        hosts = ",".join(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.nodes
        )
        return f"{scheme}://{auth}{hosts}"


def broker_kind(url: str) -> BrokerKind:
    """Which broker `url` names; ValueError if none (or a cluster URL that does not read)."""
    if url.startswith("memory://"):
        return "memory"
    if url.startswith(_SINGLE):
        return "redis"
    if url.startswith(tuple(_CLUSTER)):
        parse_cluster_url(url)
        return "cluster"
    raise ValueError(EXPECTED)


def parse_cluster_url(url: str) -> ClusterAddress:
    """A `redis+cluster://` or `rediss+cluster://` URL; ValueError saying what is wrong."""
    scheme, sep, rest = url.partition("://")
    tls = _CLUSTER.get(scheme + sep)
    if tls is None:
        raise ValueError(EXPECTED)
    location, _, query = rest.partition("?")
    if query:
        raise ValueError("a cluster URL takes no query (?...)")
    netloc, slash, path = location.partition("/")
    if slash and path not in ("", "0"):
        raise ValueError("a cluster has database 0 only: end the URL with the last host:port")
    auth, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = auth.partition(":")
        try:
            username = unquote(user, errors="strict") or None
            password = unquote(secret, errors="strict") if colon else None
        except UnicodeDecodeError:
            raise ValueError("the user and password must be percent-encoded UTF-8") from None
    nodes = tuple(_host_port(item) for item in hosts.split(","))
    return ClusterAddress(nodes, username, password, tls)


def _host_port(item: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address must be in brackets
    if (
        not sep
        or not host
        or any(c in host for c in "[]@/?#, \t")
        or not port.isascii()
        or not port.isdigit()
        or not 0 < int(port) < 65536
    ):
        raise ValueError("each cluster node must be host:port (an IPv6 address as [addr]:port)")
    return host, int(port)
