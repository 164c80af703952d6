from typing import Any

from bastion import semconv
from bastion.audit_chain import SpanView, canonical, record_hash, seal, span_fields, view_hash
from factories.audit import chain


def test_canonical_form_is_sorted_compact_json_without_the_hash_or_signature() -> None:
    record = chain(1)[0]
    text = canonical(record)
    assert text.startswith('{"agent":"a","decision":"allow","instance":"i1"')
    assert '"hash"' not in text and '"signature"' not in text and " " not in text
    assert canonical({**record, "seq": "1", "extra": "ignored", "signature": "x"}) == text


def test_a_record_written_before_view_hash_existed_keeps_its_hash() -> None:
    old: dict[str, Any] = {**chain(1)[0], "view_hash": ""}
    assert '"view_hash"' not in canonical(old)
    assert record_hash(old) != record_hash({**old, "view_hash": "ab"})


def span(**attributes: str) -> SpanView:
    attrs = {semconv.BASTION_AGENT_ID: "bot", semconv.BASTION_DECISION: "deny", **attributes}
    return SpanView(5, "t" * 32, "s" * 16, "chat m", "bastion-proxy", 7, "Error", attrs)


def test_the_view_hash_covers_what_the_view_shows_but_not_the_chain_attributes() -> None:
    base = view_hash(span())
    assert view_hash(span(**{semconv.BASTION_AUDIT_SEQ: "3"})) == base
    assert view_hash(span(**{semconv.GEN_AI_USAGE_INPUT_TOKENS: "12"})) != base
    assert view_hash(SpanView(5, "t" * 32, "s" * 16, "chat m", "bastion-proxy", 8, "Error", span().attributes)) != base


def test_span_fields_name_the_target_by_tool_then_model_then_address() -> None:
    assert span_fields(span(**{semconv.GEN_AI_TOOL_NAME: "pay", semconv.GEN_AI_REQUEST_MODEL: "m"}))["target"] == "pay"
    assert span_fields(span(**{semconv.SERVER_ADDRESS: "h", semconv.URL_PATH: "/p"}))["target"] == "h/p"
    fields = span_fields(span())
    assert (fields["agent"], fields["decision"], fields["timestamp"]) == ("bot", "deny", 5)


def test_seal_signs_the_hash_and_without_a_signer_leaves_it_unsigned() -> None:
    assert len(chain(1)[0]["signature"]) == 128
    assert seal({}, instance="i", seq=1, prev_hash="0" * 64)["signature"] == ""


def test_a_tunnel_record_targets_host_and_port() -> None:
    tunnel = {semconv.SERVER_ADDRESS: "127.0.0.1", semconv.SERVER_PORT: "4318", semconv.BASTION_DECISION: "deny"}
    call = {semconv.SERVER_ADDRESS: "api.example.com", semconv.URL_PATH: "/v1/x", semconv.BASTION_DECISION: "deny"}
    views = [SpanView(1, "t" * 32, "s" * 16, "s", "bastion-proxy", 1, "Unset", attrs) for attrs in (tunnel, call)]
    assert [span_fields(v)["target"] for v in views] == ["127.0.0.1:4318", "api.example.com/v1/x"]
