"""The POST under WireClient: botocore's own connection pool, without botocore's per-request
work around it.

botocore's URLLib3Session.send parses the URL twice, looks up the proxy and the pool, sets the
pool's certificate checks, reads an environment variable and wraps request and response in its
own classes, on every request; for sync's calls that was a third of its CPU time per key. All of
it gives the same answer for every request to one endpoint, so `Transport` asks the client's
session once (on the first request, where botocore asks it): the pool (from the session's
PoolManager, or its ProxyManager when HTTPS_PROXY/HTTP_PROXY/NO_PROXY or the client's Config
give a proxy for the endpoint), the certificate checks (AWS_CA_BUNDLE, the config's ca_bundle,
else certifi's bundle), the request target. The pool is the session's: the same size (the
client's max_pool_connections), timeouts, TLS context and kept-alive connections as the boto3
client's other calls.

With no proxy, and certificates checked if it is https, a request is spoken straight on one of
the pool's connections (wireexchange.py: urllib3 connects it, with its TLS and socket
settings; the request written at once, the answer read without urllib3's and http.client's
objects around it, 0.1 ms of CPU a call less). Else it is one `urlopen` on the pool, with
botocore's arguments (no urllib3 retries, the body read whole, not decoded): a proxy wants
its own headers or a CONNECT tunnel, and an unchecked https connection urllib3's warning on
every request. Either way a failure is urllib3's exception for it, raised as the BotoCoreError
botocore raises for it (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
ConnectionClosedError, ProxyConnectionError, SSLError, else HTTPClientError), so `Dynamo._try`
retries exactly what it retried before.

A session that is not botocore's URLLib3Session as it is known here (another botocore) is used
as it is, through its `send`.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from ddbshard.catchup.wireexchange import exchange, host_header, request_head

__all__ = ["Transport"]

# botocore's session methods resolved once here (private: checked, else `send` is used).
_SESSION_METHODS = (
    "_get_connection_manager",
    "_setup_ssl_cert",
    "_get_request_target",
)


class Transport:
    """POSTs to `url` through `http_session` (the boto3 client's `_endpoint.http_session`)."""

    def __init__(self, http_session: Any, url: str) -> None:
        from urllib3.util.retry import Retry

        self._session = http_session
        self._url = url
        self._direct = all(hasattr(http_session, m) for m in _SESSION_METHODS) and hasattr(
            getattr(http_session, "_proxy_config", None), "proxy_url_for"
        )
        self._no_retries = Retry(False)
        self._pool: Any = None  # resolved at the first request
        self._target = "/"
        self._proxy_url: str | None = None
        self._host: str | None = None  # the Host header: set when the exchange is ours
        self._timeouts: tuple[float | None, float | None] = (None, None)  # connect, read

    def post(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        """Status, headers and body of the answer. The headers: urllib3's case-insensitive
        dict, or (spoken on the pool, wireexchange.py) a dict of lowercased names; read them
        by lowercase name."""
        if not self._direct:
            return self._send(headers, body)
        from botocore import exceptions as bce
        from urllib3 import exceptions as u3

        try:
            pool = self._pool
            if pool is None or pool.pool is None:  # first request, or the manager closed it
                pool = self._resolve()
            if self._host is not None:
                return self._exchange(pool, self._host, headers, body)
            response = pool.urlopen(
                method="POST",
                url=self._target,
                body=body,
                headers=headers,
                retries=self._no_retries,
                assert_same_host=False,
                preload_content=True,
                decode_content=False,
                enforce_content_length=False,
            )
            return response.status, response.headers, response.data
        # As URLLib3Session.send maps them, in its order (NewConnectionError is a
        # ConnectTimeoutError, and proxies' failures a ProxyError, in urllib3).
        except u3.SSLError as e:
            raise bce.SSLError(endpoint_url=self._url, error=e) from e
        except (u3.NewConnectionError, socket.gaierror) as e:
            raise bce.EndpointConnectionError(endpoint_url=self._url, error=e) from e
        except u3.ProxyError as e:
            from botocore.httpsession import mask_proxy_url

            raise bce.ProxyConnectionError(
                proxy_url=mask_proxy_url(self._proxy_url), error=e
            ) from e
        except u3.ConnectTimeoutError as e:
            raise bce.ConnectTimeoutError(endpoint_url=self._url, error=e) from e
        except u3.ReadTimeoutError as e:
            raise bce.ReadTimeoutError(endpoint_url=self._url, error=e) from e
        except u3.ProtocolError as e:
            raise bce.ConnectionClosedError(error=e, request=None, endpoint_url=self._url) from e
        except Exception as e:
            raise bce.HTTPClientError(error=e) from e

    def _resolve(self) -> Any:
        """The pool, its certificate checks and the request target, as botocore finds them for
        every request (raises what botocore raises, e.g. a proxy's CA bundle unreadable)."""
        session = self._session
        proxy_url = session._proxy_config.proxy_url_for(self._url)
        pool = session._get_connection_manager(self._url, proxy_url).connection_from_url(self._url)
        session._setup_ssl_cert(pool, self._url, session._verify)
        if os.environ.get("BOTO_EXPERIMENTAL__ADD_PROXY_HOST_HEADER", "").lower() == "true":
            from urllib.parse import urlsplit

            pool.proxy_headers["host"] = urlsplit(self._url).hostname
        self._target = session._get_request_target(self._url, proxy_url)
        self._proxy_url = proxy_url
        self._host = _own_exchange_host(pool, proxy_url)
        if self._host is not None:
            from urllib3.util.timeout import Timeout

            self._timeouts = (
                Timeout.resolve_default_timeout(pool.timeout.connect_timeout),
                Timeout.resolve_default_timeout(pool.timeout.read_timeout),
            )
        self._pool = pool
        return pool

    def _exchange(
        self, pool: Any, host: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, bytes]:
        """The POST on one of the pool's connections, spoken here (wireexchange.py); the
        connection goes back to the pool, or is closed and its place given back, as urlopen
        does."""
        head = request_head(self._target, host, headers, len(body))
        conn = pool._get_conn()
        keep = False
        try:
            (status, answer_headers, answer_body), keep = exchange(
                pool, conn, head + body, *self._timeouts
            )
        finally:
            if not keep:
                conn.close()
                conn = None
            pool._put_conn(conn)
        return status, answer_headers, answer_body

    def _send(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        from botocore.awsrequest import AWSPreparedRequest

        prepared = AWSPreparedRequest("POST", self._url, headers, body, stream_output=False)
        response = self._session.send(prepared)
        content: bytes = response.content
        return response.status_code, response.headers, content


def _own_exchange_host(pool: Any, proxy_url: str | None) -> str | None:
    """The Host header to send when wireexchange.py may speak to the pool's connections: a
    plain http or https pool of urllib3's as known here, no proxy (a forwarding proxy wants
    its own headers, a tunnel its CONNECT: urlopen does both), and certificates checked (an
    unchecked https connection is warned about by urlopen on every request). None: urlopen."""
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    if proxy_url is not None or getattr(pool, "proxy", None) is not None:
        return None
    if not isinstance(pool, HTTPConnectionPool) or not all(
        hasattr(pool, m) for m in ("_get_conn", "_put_conn", "timeout")
    ):
        return None
    if not hasattr(getattr(pool, "ConnectionCls", None), "is_closed"):
        return None  # urllib3 1.x's connections: urlopen knows them
    if isinstance(pool, HTTPSConnectionPool) and pool.cert_reqs != "CERT_REQUIRED":
        return None
    default = 443 if isinstance(pool, HTTPSConnectionPool) else 80
    # As the connection names its host (urllib3 drops an FQDN's final dot).
    return host_header(pool.host.rstrip("."), pool.port, default)
