"""One HTTP peer (tail server or enclave host) with every failure mapped to a clear error.

- cannot connect -> `TransportError("unreachable")`;
- connection dropped mid-request -> `TransportError("disconnected")`;
- no answer within the timeout -> `TransportError("timeout")`;
- a TLS peer whose certificate is not the pinned one -> `TransportError("tls_pin")`;
- a JSON error answer -> `RemoteError(code, message, hint, status)` carrying the server's words.

`token` is sent as a bearer token; `tls_pin` (SHA-256 of the server certificate, see `tls.py`)
makes an `https://` peer acceptable only with exactly that certificate.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from privpart.runtime import protocol
from privpart.runtime.errors import RemoteError, TransportError


class HttpPeer:
    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        token: str | None = None,
        tls_pin: bytes | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = session
        self._own = session is None
        self._auth = protocol.bearer(token)
        self._ssl: aiohttp.Fingerprint | bool = aiohttp.Fingerprint(tls_pin) if tls_pin else True

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, force_close=False)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._own and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HttpPeer:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, CIMultiDictProxy[str]]:
        url = self.base_url + path
        headers = {
            **self._auth,
            **({"Content-Type": content_type} if content_type else {}),
            **(headers or {}),
        }
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session.request(
                    method, url, data=data, headers=headers, ssl=self._ssl
                ) as resp:
                    body = await resp.read()
                    status, resp_headers = resp.status, resp.headers
        except aiohttp.ServerFingerprintMismatch:
            raise TransportError(
                "tls_pin",
                f"{self.base_url} presented a certificate other than the pinned one",
                "check the server's certificate out of band; do not send data to this server",
                status=502,
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TransportError(
                "tls_verify",
                f"{self.base_url} presented a certificate that does not verify: "
                f"{exc.certificate_error}",
                "pin the server's certificate (privpart infer --enclave-cert FILE; API: "
                "tls_pin=cert_fingerprint(FILE)) or install its CA",
                status=502,
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(
                "unreachable",
                f"cannot connect to {self.base_url}: {exc.strerror or exc}",
                "check the URL and that the server is running",
                status=503,
            ) from None
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientOSError,
        ) as exc:
            raise TransportError(
                "disconnected",
                f"{self.base_url} closed the connection mid-request ({exc})",
                "the server may have crashed or be restarting; retry",
                status=502,
            ) from None
        except TimeoutError:
            raise TransportError(
                "timeout",
                f"no answer from {self.base_url} within {self.timeout:g} s",
                "the server is overloaded or stuck; retry later or raise the timeout",
            ) from None
        if status >= 400:
            raise RemoteError.from_answer(status, body, url)
        return status, body, resp_headers

    async def get_json(self, path: str) -> Any:
        _, body, _ = await self.request("GET", path)
        return _json(body, self.base_url + path)

    async def post_json(self, path: str, obj: Any) -> Any:
        data = json.dumps(obj).encode()
        _, body, _ = await self.request("POST", path, data, protocol.JSON_TYPE)
        return _json(body, self.base_url + path)


def _json(body: bytes, url: str) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RemoteError(
            "bad_answer", f"{url} answered something that is not JSON", "is this a privpart server?"
        ) from None
