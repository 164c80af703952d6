"""Identify: the Bastion key names the agent and never reaches upstream; no key or an unknown one is a 401."""

import base64
import json
from pathlib import Path

import pytest

from bastion.proxy.decision import Effect
from bastion.proxy.state import state
from factories.addons import identify, routed, run
from factories.proxy import REGULAR, flow, keystore, route

HTTP_TOOL = route("http", upstream="http://api.weather.example/")


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"agent:{key}".encode()).decode()


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_the_key_names_the_agent_and_bastions_headers_stop_here(tmp_path: Path, header: str) -> None:
    keys, key = keystore(tmp_path)
    value = f"Bearer {key}" if header == "authorization" else key
    f = routed(flow(headers={header: value, "x-bastion-conversation": "c1", "proxy-authorization": "Bearer x"}))
    run(identify(keys), f, "requestheaders")
    identity = state(f).identity
    assert f.response is None and identity is not None
    assert (identity.agent_id, identity.role) == ("agent-1", "assistant")
    assert not {header, "x-bastion-conversation", "proxy-authorization"} & set(f.request.headers.keys())


@pytest.mark.parametrize(("presented", "code"), [(None, "missing_key"), ("bst_not-a-key", "unknown_key")])
def test_no_key_or_an_unknown_one_is_a_401_in_the_callers_format(
    tmp_path: Path, presented: str | None, code: str
) -> None:
    keys, _ = keystore(tmp_path)
    f = routed(flow("/anthropic/v1/messages", headers={"x-api-key": presented} if presented else {}))
    run(identify(keys), f, "requestheaders")
    assert f.response is not None and f.response.status_code == 401
    assert f.response.headers["x-bastion-error"] == code
    assert json.loads(f.response.content or b"")["type"] == "error"  # Anthropic's error shape
    decision = state(f).decision
    assert state(f).identity is None and decision is not None and decision.effect is Effect.DENY


def test_http_tool_calls_present_the_key_as_proxy_credentials_and_keep_their_own(tmp_path: Path) -> None:
    keys, key = keystore(tmp_path)
    headers = {"authorization": "Bearer tool-token", "proxy-authorization": basic(key)}
    f = routed(flow("/forecast", method="GET", host="api.weather.example", mode=REGULAR, headers=headers), HTTP_TOOL)
    run(identify(keys), f, "requestheaders")
    assert state(f).identity is not None and f.response is None
    assert f.request.headers["authorization"] == "Bearer tool-token" and "proxy-authorization" not in f.request.headers


def test_a_bastion_key_sent_to_a_tool_as_its_api_key_does_not_identify(tmp_path: Path) -> None:
    keys, key = keystore(tmp_path)
    f = routed(flow("/forecast", method="GET", mode=REGULAR, headers={"authorization": f"Bearer {key}"}), HTTP_TOOL)
    run(identify(keys), f, "requestheaders")
    assert f.response is not None and f.response.status_code == 401
    assert "HTTPS_PROXY" in json.loads(f.response.content or b"")["error"]["message"]


def test_a_tunnels_credentials_identify_the_requests_inside_it_until_it_closes(tmp_path: Path) -> None:
    keys, key = keystore(tmp_path)
    addon = identify(keys)
    connect = flow("", method="CONNECT", host="api.weather.example", port=443, mode=REGULAR)
    connect.request.headers["proxy-authorization"] = basic(key)
    run(addon, connect, "http_connect")
    inside = routed(flow("/forecast", method="GET", mode=REGULAR), HTTP_TOOL)
    inside.client_conn = connect.client_conn
    run(addon, inside, "requestheaders")
    identity = state(inside).identity
    assert identity is not None and identity.agent_id == "agent-1" and inside.response is None
    addon.client_disconnected(connect.client_conn)
    after = routed(flow("/forecast", method="GET", mode=REGULAR), HTTP_TOOL)
    after.client_conn = connect.client_conn
    run(addon, after, "requestheaders")
    assert state(after).identity is None and after.response is not None and after.response.status_code == 401


def test_an_answered_flow_is_left_alone(tmp_path: Path) -> None:
    keys, key = keystore(tmp_path)
    f = routed(flow(headers={"authorization": f"Bearer {key}"}))
    f.kill()
    run(identify(keys), f, "requestheaders")
    assert state(f).identity is None and "authorization" in f.request.headers
