"""Routing: reverse-proxy paths by prefix, explicit-proxy requests by host; unknown prefixes get a 404."""

import json
from pathlib import Path

from bastion.proxy.decision import Effect
from bastion.proxy.state import state
from factories.addons import config, routing, run
from factories.proxy import REGULAR, flow, route


def test_a_prefix_names_the_route_and_the_upstream_path(tmp_path: Path) -> None:
    f = run(routing(config(tmp_path)), flow("/anthropic/v1/messages?beta=true"), "requestheaders")
    st = state(f)
    assert f.response is None and st.route is not None and st.route.name == "anthropic"
    assert st.upstream_path == "/v1/messages?beta=true"


def test_an_unknown_prefix_is_a_404_listing_the_configured_ones(tmp_path: Path) -> None:
    f = run(routing(config(tmp_path)), flow("/gemini/v1/models"), "requestheaders")
    assert f.response is not None and f.response.status_code == 404
    assert f.response.headers["x-bastion-error"] == "unknown_route"
    message = json.loads(f.response.content or b"")["error"]["message"]
    assert "/gemini/v1/models" in message and "/openai/, /anthropic/" in message
    decision = state(f).decision
    assert decision is not None and decision.effect is Effect.ERROR and state(f).route is None


def test_the_explicit_proxy_routes_by_host_and_passes_other_hosts_as_http_calls(tmp_path: Path) -> None:
    cfg = config(tmp_path, (route("openai", hosts=("api.openai.com",)),))
    known = run(routing(cfg), flow("/v1/chat/completions", host="api.openai.com", mode=REGULAR), "requestheaders")
    assert state(known).route == cfg.routes[0] and state(known).upstream_path == "/v1/chat/completions"
    other = run(routing(cfg), flow("/forecast?q=1", host="api.weather.example", mode=REGULAR), "requestheaders")
    st = state(other)
    assert st.route is not None and st.route.provider == "http" and st.route.api_key_env is None
    assert st.route.upstream.host == "api.weather.example" and st.upstream_path == "/forecast?q=1"


def test_a_flow_already_routed_or_answered_is_left_alone(tmp_path: Path) -> None:
    mcp = route("mcp", prefix="/mcp/tools")
    f = flow("/mcp/tools")
    state(f).route, state(f).upstream_path = mcp, "/mcp"
    run(routing(config(tmp_path)), f, "requestheaders")
    assert state(f).route is mcp and state(f).upstream_path == "/mcp" and f.response is None
    answered = flow("/nowhere")
    answered.kill()
    run(routing(config(tmp_path)), answered, "requestheaders")
    assert state(answered).route is None and answered.response is None
