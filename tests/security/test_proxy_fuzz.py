"""Fuzz: malformed and odd requests to a real proxy's OpenAI, Anthropic and MCP endpoints, with a valid key.

Client errors are 4xx. A 5xx is only right when Bastion itself cannot serve, and SDKs retry 503s,
so bad input answered 5xx makes agents hammer Bastion with it. The upstreams (the scripted model and
the demo tool server) are up for the whole run, so no answer may be a 5xx; afterwards the proxy
still serves an ordinary call. Bounded and reproducible: derandomized, a few hundred examples
(hypothesis also draws constants from the project's loaded modules, so a run of this file alone and
one inside the whole suite try different inputs, each the same every time). On the code before
this test, it found 503s from PII analysis (lone surrogates; 10 KB of brackets in a tool argument).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories import processes
from support import copy_policies, create_key, free_ports

MAX_BODY = 200_000
ANTHROPIC_PATH = "/anthropic/v1/messages"
MCP_PATH = "/mcp/tools"


@dataclass
class Stack:
    proxy: str
    key: str
    session: str  # an MCP session (handshake-era revision) the fuzzed requests may continue


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("fuzz")
    policies = tmp / "policies"
    copy_policies(policies, "tests", "keys.yaml")
    pii = policies / "pii.yaml"
    pii.write_text(pii.read_text().replace("mcp: audit", "mcp: enforce"))  # redaction on MCP too
    key = create_key(tmp / "keys.yaml")
    model_port, tools_port, collector_port, *proxy_ports = free_ports(5)
    env = processes.routes_env(processes.url(model_port), tmp / "keys.yaml", processes.url(collector_port))
    env["BASTION_MCP_TOOLS_URL"] = f"{processes.url(tools_port)}/mcp"
    flags = ["--max-body-bytes", str(MAX_BODY)]
    with (
        processes.scripted_model(tmp, model_port) as model,
        processes.tool_server(tmp, tools_port) as tools,
        processes.proxy(tmp, "proxy", proxy_ports, env, policies, flags) as proxy,
    ):
        processes.ready(model, tools, proxy)
        yield Stack(proxy.url, key, open_session(proxy.url, key))


def open_session(proxy: str, key: str) -> str:
    headers = {"authorization": f"Bearer {key}", "accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize"}
    init["params"] = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "f", "version": "1"}}
    session = httpx.post(proxy + MCP_PATH, json=init, headers=headers).headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    httpx.post(proxy + MCP_PATH, json=note, headers={**headers, "mcp-session-id": session}).raise_for_status()
    return str(session)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as c:
        yield c


# Text with what is rare in st.text(): lone surrogates (valid in JSON as "\ud800"), controls, bidi
# marks, a byte-order mark, astral characters, and personal data for the redaction to find.
ODD_PIECES = ["\ud800", "\udfff", "\x00", "\u202e", "\ufeff", "\U0010ffff", "😀", "é", "alice@example.com", " "]
odd_text = st.lists(st.sampled_from(ODD_PIECES) | st.text(max_size=6), max_size=8).map("".join)
# JSON of every shape: unicode, huge and tiny numbers, nesting.
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | odd_text
    | st.sampled_from(["", "scripted-small", "user"])
)
json_values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=25,
)  # fmt: skip


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


odd_values = (
    json_values
    | odd_text
    | st.integers(min_value=10**18, max_value=10**300)
    | st.text(min_size=1, max_size=2000)  # unicode of every plane
    | st.integers(min_value=10, max_value=120).map(_deep)
    | st.sampled_from(["x" * 50_000, "call get_weather", "alice@example.com " * 500, json.dumps(_deep(5000))])
    | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "input_text", "tool_result"])},
                                     optional={"text": json_values, "content": json_values}), max_size=3)
)  # fmt: skip

# A valid call per endpoint, which the mutations below bend.
BASES: dict[str, dict[str, Any]] = {
    "/openai/v1/chat/completions": {"model": "scripted-small", "messages": [{"role": "user", "content": "hello"}]},
    "/openai/v1/responses": {"model": "scripted-small", "input": "hello"},
    "/openai/v1/embeddings": {"model": "scripted-small", "input": "hello"},
    ANTHROPIC_PATH: {"model": "scripted-small", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]},
    MCP_PATH: {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "get_weather", "arguments": {"city": "Paris"}},
    },
}
FIELDS = ["model", "messages", "input", "stream", "tools", "max_tokens", "system", "instructions", "tool_choice",
          "previous_response_id", "jsonrpc", "id", "method", "params"]  # fmt: skip
# Where a mutation lands: the top level, the first message, or an MCP call's params and arguments.
PLACES = st.sampled_from(["top", "message", "params", "arguments"])


@st.composite
def bodies(draw: st.DrawFn, path: str) -> bytes:
    body = json.loads(json.dumps(BASES[path]))
    for _ in range(draw(st.integers(0, 3))):
        place, value, messages = draw(PLACES), draw(odd_values), body.get("messages")
        if place == "top":
            body[draw(st.sampled_from(FIELDS) | st.text(max_size=8))] = value
        elif place == "message" and isinstance(messages, list) and messages and isinstance(messages[0], dict):
            messages[0][draw(st.sampled_from(["content", "role", "tool_calls", "name"]))] = value
        elif place in ("params", "arguments") and isinstance(body.get("params"), dict):
            target = body["params"] if place == "params" else body["params"].setdefault("arguments", {})
            if isinstance(target, dict):
                target[draw(st.sampled_from(["name", "arguments", "_meta", "city", "amount", "recipient"]))] = value
    if draw(st.booleans()) and path != MCP_PATH:
        body["stream"] = True
    # Lone surrogates (in the sampled leaves) go as the JSON escapes that carry them.
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "backslashreplace")


def _nested(depth: int) -> bytes:
    return b'{"model": "scripted-small", "messages": ' + b"[" * depth + b"]" * depth + b"}"


raw_bodies = st.binary(max_size=200) | st.sampled_from(
    [
        b"",
        b"null",
        b"[]",
        b'"text"',
        b"{",
        b"\xff\xfe{}",
        b'{"model": "scripted-small", "max_tokens": 1' + b"0" * 5000 + b"}",
        b'{"model": "scripted-small", "max_tokens": 1e999, "messages": [{"role": "user", "content": "hi"}]}',
        b'{"model": "scripted-small", "messages": [{"role": "user", "content": NaN}]}',
        b'{"model": "scripted-small", "model": ["dup"]}',
        _nested(50),
        _nested(3000),
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'[{"jsonrpc": "2.0", "method": "ping", "id": 1}, 5]',
    ]
)
content_types = st.sampled_from(["application/json"] * 6 + [
    "APPLICATION/JSON; charset=latin-1", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/octet-stream", "",
])  # fmt: skip
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
odd_headers = st.dictionaries(
    st.sampled_from(["x-bastion-conversation", "mcp-session-id", "mcp-protocol-version", "traceparent", "tracestate",
                     "accept", "accept-encoding", "content-encoding", "anthropic-version", "mcp-method", "mcp-name"]),
    header_text | st.sampled_from(["gzip", "br", "zstd", "identity", "2026-07-28", "2025-06-18", "text/event-stream"]),
    max_size=2,
)  # fmt: skip
MODERN_MCP = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "get_weather"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes
    content_type: str
    headers: dict[str, str]
    in_session: bool  # an MCP request in the open session


@st.composite
def requests(draw: st.DrawFn) -> Request:
    path = draw(st.sampled_from([*BASES, MCP_PATH]))
    body = draw(bodies(path)) if draw(st.integers(0, 4)) else draw(raw_bodies)
    mcp_revision = draw(st.sampled_from(["modern", "session", "none"])) if path == MCP_PATH else "none"
    headers = {**(MODERN_MCP if mcp_revision == "modern" else {}), **draw(odd_headers)}
    method = draw(st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE"]))
    # Only POSTs in the session: a GET opens its stream, which stays open; a DELETE would end it.
    return Request(method, path, body, draw(content_types), headers, mcp_revision == "session" and method == "POST")


def send(client: httpx.Client, stack: Stack, request: Request) -> httpx.Response:
    headers = {k: v.strip(" \t").encode("latin-1") for k, v in request.headers.items()}
    headers["authorization"] = f"Bearer {stack.key}".encode()
    if request.content_type:
        headers["content-type"] = request.content_type.encode()
    if request.path == MCP_PATH and "accept" not in request.headers:
        headers["accept"] = b"application/json, text/event-stream"
    if request.in_session:
        headers |= {"mcp-session-id": stack.session.encode(), "mcp-protocol-version": b"2025-06-18"}
    return client.request(request.method, stack.proxy + request.path, content=request.body, headers=headers)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(request=requests())
def test_odd_requests_never_get_a_server_error(stack: Stack, client: httpx.Client, request: Request) -> None:
    r = send(client, stack, request)
    assert r.status_code < 500, f"{r.status_code} {r.headers.get('x-bastion-error')}: {r.text[:500]}"


def test_the_proxy_still_serves_after_the_fuzz(stack: Stack, client: httpx.Client) -> None:
    body = {"model": "scripted-small", "messages": [{"role": "user", "content": "hello"}]}
    r = client.post(
        f"{stack.proxy}/openai/v1/chat/completions", json=body, headers={"authorization": f"Bearer {stack.key}"}
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
