"""The ``dstack`` provider: quotes from the dstack guest agent over its unix socket.

The agent speaks JSON over HTTP on a unix socket (the host name is ignored):

- ``POST /GetQuote {"report_data": "<128 hex>"}`` ->
  ``{"quote": hex, "event_log": "<JSON list, as a string>", "report_data": hex,
  "vm_config": "<JSON object, as a string>"}``
- ``POST /Info {}`` -> ``{"app_id", "instance_id", "app_cert", "tcb_info": "<JSON
  object, as a string>", "app_name", "device_id", "mr_aggregated", "os_image_hash",
  "key_provider_info", "compose_hash", "vm_config", ...}``; errors are HTTP 4xx/5xx,
  usually with ``{"error": "..."}``.

The legacy ``tappd`` agent (dstack before 0.5, ``/var/run/tappd.sock``) is supported
too: ``POST /prpc/Tappd.TdxQuote {"report_data": hex, "hash_algorithm": "raw"}`` and
``POST /prpc/Tappd.Info``; "raw" makes it put our 64 bytes in the quote unhashed.

Low-rate I/O (one call per attestation request), so httpx is fine here.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Any, Final

import httpx

from mercato.attestation.base import Quote
from mercato.attestation.tdx import QuoteFormatError, extract_report_data
from mercato.errors import Unavailable, UpstreamError

DEFAULT_DSTACK_SOCKET: Final = "/var/run/dstack.sock"
DEFAULT_TAPPD_SOCKET: Final = "/var/run/tappd.sock"
_BAD_RESPONSE: Final = "attestation_agent_bad_response"
_AGENT_ERROR: Final = "attestation_agent_error"
_UNAVAILABLE: Final = "attestation_unavailable"


@dataclass(frozen=True, slots=True)
class _Api:
    name: str
    quote_path: str
    info_path: str
    quote_extra: tuple[tuple[str, str], ...] = ()


_DSTACK: Final = _Api("dstack", "/GetQuote", "/Info")
_TAPPD: Final = _Api(
    "tappd", "/prpc/Tappd.TdxQuote", "/prpc/Tappd.Info", (("hash_algorithm", "raw"),)
)


def _bad(message: str) -> UpstreamError:
    return UpstreamError(message, code=_BAD_RESPONSE)


def _connect_error(socket_path: str, api: str, exc: Exception) -> Unavailable:
    if not os.path.exists(socket_path):
        return Unavailable(
            f"{api} guest agent socket {socket_path} does not exist: not running in a "
            "dstack CVM, or the socket is not mounted (use attestation kind 'none' "
            "to run without a TEE)",
            code=_UNAVAILABLE,
        )
    return Unavailable(
        f"cannot reach the {api} guest agent at {socket_path}: {exc}", code=_UNAVAILABLE
    )


def _error_detail(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])[:300]
    return resp.text[:300]


def _json_value(value: object, field: str) -> object:
    """A field the agent sends as a JSON-encoded string (or, newer, already decoded)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise _bad(f"agent field {field!r} is not valid JSON: {exc}") from exc


def _event_log(value: object) -> list[dict[str, Any]]:
    if value is None or value == "":
        return []
    parsed = _json_value(value, "event_log")
    if not isinstance(parsed, list) or not all(isinstance(e, dict) for e in parsed):
        raise _bad("agent field 'event_log' is not a list of objects")
    return parsed


def _vm_config(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad("agent field 'vm_config' is not a string")
    if not isinstance(_json_value(value, "vm_config"), dict):
        raise _bad("agent field 'vm_config' is not a JSON object")
    return value


def _hex_field(data: dict[str, Any], field: str) -> bytes:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise _bad(f"agent response has no {field!r}")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise _bad(f"agent field {field!r} is not hex") from exc


def parse_quote_response(data: dict[str, Any], report_data: bytes) -> Quote:
    """Check a GetQuote/TdxQuote answer and turn it into a :class:`Quote`. Pure."""
    quote = _hex_field(data, "quote")
    echoed = data.get("report_data")
    if echoed and _hex_field(data, "report_data").ljust(64, b"\x00") != report_data:
        raise _bad("agent echoed a different report_data than the one asked for")
    try:
        bound = extract_report_data(quote)
    except QuoteFormatError as exc:
        raise _bad(f"agent returned an unusable quote: {exc}") from exc
    if bound != report_data:
        raise _bad("agent returned a quote that does not carry the requested report_data")
    return Quote(
        quote_hex=quote.hex(),
        report_data_hex=report_data.hex(),
        event_log=_event_log(data.get("event_log")),
        vm_config=_vm_config(data.get("vm_config")),
    )


def parse_info_response(data: dict[str, Any]) -> dict[str, Any]:
    """The agent's Info with ``tcb_info`` (and its event log) decoded into JSON. Pure."""
    info = dict(data)
    if "tcb_info" in info and info["tcb_info"] not in (None, ""):
        tcb = _json_value(info["tcb_info"], "tcb_info")
        if not isinstance(tcb, dict):
            raise _bad("agent field 'tcb_info' is not a JSON object")
        if "event_log" in tcb:
            tcb["event_log"] = _event_log(tcb["event_log"])
        info["tcb_info"] = tcb
    return info


class DstackProvider:
    """Quotes from the dstack (or legacy tappd) guest agent on a unix socket.

    ``info()`` is fetched once and cached (it describes the CVM, which does not change
    while we run); every ``get_quote`` is a fresh call, since the quote binds the nonce.
    """

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        legacy_tappd: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self._api = _TAPPD if legacy_tappd else _DSTACK
        default = DEFAULT_TAPPD_SOCKET if legacy_tappd else DEFAULT_DSTACK_SOCKET
        self.socket_path = socket_path or default
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=self.socket_path),
            base_url="http://dstack",
            timeout=timeout,
        )
        self._info: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return self._api.name

    async def _call(self, path: str, body: dict[str, str]) -> dict[str, Any]:
        api = self._api.name
        try:
            resp = await self._client.post(path, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _connect_error(self.socket_path, api, exc) from exc
        except httpx.TimeoutException as exc:
            raise Unavailable(f"{api} guest agent timed out on {path}", code=_UNAVAILABLE) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"{api} guest agent call {path} failed: {exc}", code=_AGENT_ERROR
            ) from exc
        if resp.status_code != 200:
            raise UpstreamError(
                f"{api} guest agent answered {path} with HTTP {resp.status_code}: "
                f"{_error_detail(resp)}",
                code=_AGENT_ERROR,
            )
        try:
            data = resp.json()
        except ValueError as exc:
            raise _bad(f"{api} guest agent answered {path} with invalid JSON") from exc
        if not isinstance(data, dict):
            raise _bad(f"{api} guest agent answered {path} with JSON that is not an object")
        return data

    async def get_quote(self, report_data: bytes) -> Quote:
        if len(report_data) != 64:
            raise ValueError(f"report_data must be 64 bytes, got {len(report_data)}")
        body = {"report_data": report_data.hex(), **dict(self._api.quote_extra)}
        return parse_quote_response(await self._call(self._api.quote_path, body), report_data)

    async def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = parse_info_response(await self._call(self._api.info_path, {}))
        return copy.deepcopy(self._info)

    async def close(self) -> None:
        await self._client.aclose()
