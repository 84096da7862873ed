"""Stringified proxies: ``identity[ -f facet][ -t|-o|...][ -e 1.1]:tcp -h H -p P[:...]``
(``ssl`` endpoints take the same options); an indirect proxy names an adapter
instead of endpoints (``identity[ options] @ adapter_id``), a well-known one
names neither (``identity[ options]``): a locator resolves both."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ProxyParseError
from .identity import Identity

__all__ = ["Endpoint", "ProxySpec", "format_adapter_id", "format_endpoint", "parse_endpoints",
           "parse_proxy"]

_MODES = {"-t": "twoway", "-o": "oneway", "-O": "batch_oneway", "-d": "datagram",
          "-D": "batch_datagram"}


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    timeout_ms: int | None = None
    compress: bool = False
    transport: str = "tcp"  # or "ssl"

    @property
    def secure(self) -> bool:
        return self.transport == "ssl"

    def __str__(self) -> str:
        return format_endpoint(self)


@dataclass(frozen=True)
class ProxySpec:
    identity: Identity
    facet: str
    mode: str
    endpoints: tuple[Endpoint, ...]
    # None: a direct proxy (it has endpoints). "": well-known (found by its
    # identity). Otherwise the id of the adapter (or replica group) to find.
    adapter_id: str | None = None


def _tokens(text: str) -> list[str]:
    """Splits on white space, keeping double-quoted runs (quotes removed) whole."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    had_token = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            had_token = True
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
            had_token = True
        elif ch.isspace() and not quoted:
            if had_token:
                out.append("".join(current))
            current, had_token = [], False
        else:
            current.append(ch)
            had_token = True
        i += 1
    if quoted:
        raise ProxyParseError(f"unterminated quote in {text!r}")
    if had_token:
        out.append("".join(current))
    return out


def _split_unquoted(text: str, sep: str) -> list[str]:
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def parse_endpoint(text: str) -> Endpoint:
    tokens = _tokens(text)
    if not tokens:
        raise ProxyParseError("empty endpoint")
    if tokens[0] not in ("tcp", "ssl"):
        raise ProxyParseError(f"unsupported transport {tokens[0]!r} in {text.strip()!r}")
    host, port, timeout, compress = "", None, None, False
    i = 1
    while i < len(tokens):
        option = tokens[i]
        value = tokens[i + 1] if i + 1 < len(tokens) and not tokens[i + 1].startswith("-") else None
        if option == "-z":
            compress = True
            i += 1
            continue
        if value is None:
            raise ProxyParseError(f"option {option} needs a value in {text.strip()!r}")
        if option == "-h":
            host = value
        elif option == "-p":
            try:
                port = int(value)
            except ValueError:
                raise ProxyParseError(f"invalid port {value!r}") from None
            if not 0 <= port <= 65535:
                raise ProxyParseError(f"port {port} out of range")
        elif option == "-t":
            if value != "infinite":
                try:
                    timeout = int(value)
                except ValueError:
                    raise ProxyParseError(f"invalid timeout {value!r}") from None
        elif option in ("--sourceAddress",):
            pass
        else:
            raise ProxyParseError(f"unknown endpoint option {option!r} in {text.strip()!r}")
        i += 2
    if port is None:
        raise ProxyParseError(f"endpoint {text.strip()!r} has no port (-p)")
    return Endpoint(host or "*", port, timeout, compress, tokens[0])


def parse_endpoints(text: str) -> tuple[Endpoint, ...]:
    parts = [p for p in _split_unquoted(text, ":")]
    if not any(p.strip() for p in parts):
        raise ProxyParseError("no endpoint given")
    return tuple(parse_endpoint(p) for p in parts if p.strip())


def format_endpoint(endpoint: Endpoint) -> str:
    host = endpoint.host
    if any(ch in host for ch in ": ") :
        host = f'"{host}"'
    text = f"{endpoint.transport} -h {host} -p {endpoint.port}"
    if endpoint.timeout_ms is not None:
        text += f" -t {endpoint.timeout_ms}"
    if endpoint.compress:
        text += " -z"
    return text


def parse_proxy(text: str) -> ProxySpec:
    if not isinstance(text, str):
        raise TypeError(f"a proxy string is a str, not {type(text).__name__}")
    parts = _split_unquoted(text.strip(), ":")
    head = parts[0]
    adapter_id: str | None = None
    at = _split_unquoted(head, "@")
    if len(at) > 1:
        if len(at) > 2:
            raise ProxyParseError(f"more than one @ in proxy {text!r}")
        if len(parts) > 1:
            raise ProxyParseError(f"an indirect proxy (@ adapter) has no endpoints: {text!r}")
        head = at[0]
        adapter_tokens = _tokens(at[1])
        if len(adapter_tokens) != 1 or not adapter_tokens[0]:
            raise ProxyParseError(f"no adapter id after @ in proxy {text!r}")
        adapter_id = re.sub(r"\\(.)", r"\1", adapter_tokens[0])
    tokens = _tokens(head)
    if not tokens:
        raise ProxyParseError(f"no identity in proxy {text!r}")
    try:
        identity = Identity.parse(tokens[0])
    except ValueError as e:
        raise ProxyParseError(str(e)) from None
    facet, mode = "", "twoway"
    i = 1
    while i < len(tokens):
        option = tokens[i]
        if option == "-f":
            if i + 1 >= len(tokens):
                raise ProxyParseError("option -f needs a facet")
            facet = tokens[i + 1].replace("\\", "")
            i += 2
        elif option in _MODES:
            mode = _MODES[option]
            i += 1
        elif option in ("-e", "-p"):
            if i + 1 >= len(tokens):
                raise ProxyParseError(f"option {option} needs a version")
            version = tokens[i + 1]
            if option == "-e" and not version.startswith("1."):
                raise ProxyParseError(f"unsupported encoding {version}")
            if option == "-p" and version != "1.0":
                raise ProxyParseError(f"unsupported protocol {version}")
            i += 2
        elif option == "-s":
            raise ProxyParseError("secure proxies (-s) are not supported")
        else:
            raise ProxyParseError(f"unknown proxy option {option!r} in {text!r}")
    if mode not in ("twoway", "oneway"):
        raise ProxyParseError(f"proxy mode {mode} is not supported (only -t and -o)")
    endpoints = tuple(parse_endpoint(p) for p in parts[1:] if p.strip())
    if not endpoints and adapter_id is None:
        if len(parts) > 1:
            raise ProxyParseError(f"proxy {text!r} has no endpoint")
        adapter_id = ""  # well-known: the locator finds it by its identity
    return ProxySpec(identity, facet, mode, endpoints, adapter_id)


def format_adapter_id(adapter_id: str) -> str:
    """``adapter_id`` as it follows ``@`` in a stringified proxy (quoted when needed)."""
    if not adapter_id or any(ch.isspace() or ch in ':@"' for ch in adapter_id):
        return '"' + adapter_id.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return adapter_id
