"""McpSessions: an MCP session id reaches the client bound to its agent, and only that agent may use it."""

import json

import pytest
from mitmproxy import http

from bastion.proxy.decision import Effect
from bastion.proxy.keys import Identity
from bastion.proxy.state import state
from factories.addons import mcp_flow, mcp_sessions, run
from factories.proxy import flow, mcp_session

LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


def test_the_servers_session_id_reaches_the_client_bound_and_comes_back_unbound() -> None:
    addon = mcp_sessions()
    opened = mcp_flow(LIST)
    opened.response = http.Response.make(200, b"{}", {"mcp-session-id": "s1"})
    run(addon, opened, "responseheaders")
    handed = opened.response.headers["mcp-session-id"]
    assert handed not in ("s1", "") and handed == mcp_session("s1")
    later = run(addon, mcp_flow(LIST, headers={"mcp-session-id": handed}), "requestheaders")
    assert later.response is None and later.request.headers["mcp-session-id"] == "s1"


@pytest.mark.parametrize(
    "presented",
    [mcp_session("s1", agent="agent-2"), mcp_session("s1", server="other"), "s1", "made-up"],
    ids=["another agent's", "another server's", "the server's own", "made up"],
)
def test_a_session_id_not_handed_to_this_agent_is_a_jsonrpc_404(presented: str) -> None:
    f = run(mcp_sessions(), mcp_flow(LIST, headers={"mcp-session-id": presented}), "requestheaders")
    assert f.response is not None and f.response.status_code == 404
    assert f.response.headers["x-bastion-error"] == "unknown_mcp_session"
    assert "start a new session" in json.loads(f.response.content or b"")["error"]["message"]
    decision = state(f).decision
    assert decision is not None and decision.effect is Effect.DENY


def test_requests_without_a_session_and_other_flows_are_left_alone() -> None:
    fresh = run(mcp_sessions(), mcp_flow(LIST), "requestheaders")
    unidentified = run(mcp_sessions(), mcp_flow(LIST, identity=None, headers={"mcp-session-id": "x"}), "requestheaders")
    model = run(mcp_sessions(), flow(headers={"mcp-session-id": "x"}), "requestheaders")
    assert fresh.response is None and unidentified.response is None and model.response is None
    assert model.request.headers["mcp-session-id"] == "x"


def test_a_session_opened_by_another_agent_is_not_bound_to_this_one() -> None:
    other = mcp_flow(LIST, identity=Identity("agent-2", "assistant", "k2"))
    other.response = http.Response.make(200, b"{}", {"mcp-session-id": "s1"})
    run(mcp_sessions(), other, "responseheaders")
    assert other.response.headers["mcp-session-id"] == mcp_session("s1", agent="agent-2") != mcp_session("s1")
