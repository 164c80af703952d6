"""McpRouting: /mcp/<server> goes to the server's exact URL; other paths under /mcp get a JSON-RPC 404."""

import json
from pathlib import Path

import pytest
from mitmproxy.proxy.mode_specs import ProxyMode

from bastion import semconv
from bastion.proxy.decision import Effect
from bastion.proxy.state import mcp_server, state
from factories.addons import TOOLS, config, mcp_routing, run
from factories.proxy import REGULAR, REVERSE, flow


@pytest.mark.parametrize(("path", "upstream"), [("/mcp/tools", "/mcp"), ("/mcp/tools/?trace=1", "/mcp?trace=1")])
def test_a_server_path_goes_to_the_servers_exact_url(tmp_path: Path, path: str, upstream: str) -> None:
    f = run(mcp_routing(config(tmp_path)), flow(path, headers={"accept-encoding": "gzip"}), "requestheaders")
    st = state(f)
    assert f.response is None and mcp_server(f) == TOOLS and st.route == TOOLS.route
    assert st.upstream_path == upstream
    assert st.attributes[semconv.BASTION_MCP_SERVER] == "tools"
    assert "accept-encoding" not in f.request.headers  # answers come uncompressed, to be read


def test_an_unknown_server_is_a_jsonrpc_404_naming_the_configured_ones(tmp_path: Path) -> None:
    f = run(mcp_routing(config(tmp_path)), flow("/mcp/files"), "requestheaders")
    assert f.response is not None and f.response.status_code == 404
    assert f.response.headers["x-bastion-error"] == "unknown_mcp_server"
    answer = json.loads(f.response.content or b"")
    assert answer["jsonrpc"] == "2.0" and "tools at /mcp/tools" in answer["error"]["message"]
    decision = state(f).decision
    assert decision is not None and decision.effect is Effect.ERROR and mcp_server(f) is None


@pytest.mark.parametrize(("path", "mode"), [("/openai/v1/chat/completions", REVERSE), ("/mcp/tools", REGULAR)])
def test_other_requests_are_left_to_routing(tmp_path: Path, path: str, mode: ProxyMode) -> None:
    f = run(mcp_routing(config(tmp_path)), flow(path, mode=mode), "requestheaders")
    assert state(f).route is None and mcp_server(f) is None


def test_an_answered_flow_is_left_alone(tmp_path: Path) -> None:
    f = flow("/mcp/tools")
    f.kill()
    run(mcp_routing(config(tmp_path)), f, "requestheaders")
    assert mcp_server(f) is None and f.response is None
