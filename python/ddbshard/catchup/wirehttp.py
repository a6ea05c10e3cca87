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
client's other calls. Each request is then one `urlopen` on it, with botocore's arguments (no
urllib3 retries, the body read whole, not decoded), and a failure is raised as the BotoCoreError
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

    def post(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        """Status, headers (case-insensitive) and body of the answer."""
        if not self._direct:
            return self._send(headers, body)
        from botocore import exceptions as bce
        from urllib3 import exceptions as u3

        try:
            pool = self._pool
            if pool is None or pool.pool is None:  # first request, or the manager closed it
                pool = self._resolve()
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
        self._pool = pool
        return pool

    def _send(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        from botocore.awsrequest import AWSPreparedRequest

        prepared = AWSPreparedRequest("POST", self._url, headers, body, stream_output=False)
        response = self._session.send(prepared)
        content: bytes = response.content
        return response.status_code, response.headers, content
