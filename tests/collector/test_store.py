from datetime import UTC, datetime

from bastion.collector import otlp, schema
from bastion.collector.store import Store
from bastion.collector.views import AuditFilters, iso_time
from bastion.settings import CollectorSettings
from factories.collector import NOW, decision_span, request, span, trace_id


def add(store: Store, *spans: object, service: str = "bastion-proxy") -> None:
    store.insert_spans(otlp.rows(request(*spans, service=service)))  # type: ignore[arg-type]


def test_migrate_is_idempotent_and_creates_the_exporter_schema(store: Store) -> None:
    store.migrate()
    rows = store._query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'otel_traces'"
        " AND default_kind != 'ALIAS' ORDER BY position",
        {"db": store.database},
    )
    assert [tuple(r) for r in rows] == list(schema.INSERT_COLUMNS)
    engines = store._query(
        "SELECT name, engine FROM system.tables WHERE database = {db:String} ORDER BY name", {"db": store.database}
    )
    assert [tuple(r) for r in engines] == [
        ("otel_traces", "MergeTree"),
        ("otel_traces_trace_id_ts", "AggregatingMergeTree"),
        ("otel_traces_trace_id_ts_mv", "MaterializedView"),
    ]


def test_a_trace_comes_back_whole_and_in_order_with_nanoseconds(store: Store) -> None:
    root = span("root", start=NOW + 7, attributes={"a": "b"})
    child = span("child", trace=root.trace_id, parent=root.span_id, start=NOW + 1_000_000_001)
    child.events.add(name="e", time_unix_nano=NOW + 1_000_000_500)
    add(store, child)
    add(store, root, service="agent")
    add(store, span("other"))

    spans = store.trace(root.trace_id.hex())

    assert [s["span_name"] for s in spans] == ["root", "child"]
    assert [s["service_name"] for s in spans] == ["agent", "bastion-proxy"]
    assert spans[1]["parent_span_id"] == root.span_id.hex()
    assert spans[0]["attributes"] == {"a": "b"} and spans[0]["resource_attributes"]["service.name"] == "agent"
    assert spans[1]["events"] == [{"timestamp": iso_time(NOW + 1_000_000_500), "name": "e", "attributes": {}}]
    assert spans[0]["duration_ms"] == 2.5
    assert store._query(
        "SELECT toUnixTimestamp64Nano(Timestamp) FROM {db:Identifier}.otel_traces WHERE SpanName = 'root'",
        {"db": store.database},
    ) == [(NOW + 7,)]
    assert store.trace(trace_id(10**9).hex()) == []


def test_audit_lists_decisions_newest_first_with_filters_and_pages(store: Store) -> None:
    second = 1_000_000_000
    base = NOW // second * second
    for s in (  # one insert each: filters must hold across parts, not only within one
        span(start=base, attributes=decision_span("a1", "allow")),
        span(start=base + second + 1000, attributes=decision_span("a2", "deny", kind="http")),
        span(start=base + 2 * second, attributes=decision_span("a1", "deny")),
        span(start=base + 3 * second, attributes={"no": "decision"}),
    ):
        add(store, s)

    def audit(**kw: object) -> list[tuple[str, str]]:
        page = store.audit(AuditFilters(**kw))  # type: ignore[arg-type]
        return [(i["agent_id"], i["decision"]) for i in page["items"]]

    assert audit() == [("a1", "deny"), ("a2", "deny"), ("a1", "allow")]
    assert audit(agent="a1") == [("a1", "deny"), ("a1", "allow")]
    assert audit(decision="deny") == [("a1", "deny"), ("a2", "deny")]
    assert audit(kind="http") == [("a2", "deny")]
    middle = datetime.fromtimestamp(base // second + 1, UTC).replace(microsecond=1)
    assert audit(since=middle) == [("a1", "deny"), ("a2", "deny")]
    assert audit(until=middle) == [("a2", "deny"), ("a1", "allow")]
    assert audit(agent="nobody") == []

    first = store.audit(AuditFilters(limit=2))
    assert (first["limit"], first["offset"], first["next_offset"]) == (2, 0, 2)
    last = store.audit(AuditFilters(limit=2, offset=2))
    assert [i["agent_id"] for i in last["items"]] == ["a1"] and last["next_offset"] is None


def test_an_audit_item_has_every_field_and_null_for_what_is_missing(store: Store) -> None:
    s = span(start=NOW, duration_ns=1_250_000, attributes=decision_span())
    add(store, s)
    [item] = store.audit(AuditFilters())["items"]
    assert item == {
        "timestamp": datetime.fromtimestamp(NOW // 1000 / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "trace_id": s.trace_id.hex(),
        "span_id": s.span_id.hex(),
        "span_name": "chat gpt-4o",
        "service_name": "bastion-proxy",
        "duration_ms": 1.25,
        "status_code": "Unset",
        "agent_id": "agent-1",
        "agent_role": "analyst",
        "decision": "allow",
        "rule": "rule-allow",
        "policy_version": "v1",
        "kind": "model",
        "operation": "chat",
        "provider": "openai",
        "request_model": "gpt-4o",
        "response_model": None,
        "input_tokens": 12,
        "output_tokens": None,
        "http_status": 200,
        "error_type": None,
        "tool_name": None,
        "mcp_method": None,
        "shadow_decision": None,
        "shadow_rule": None,
        "approval_status": None,
        "approval_approver": None,
        "verified": False,
        "unverified_reason": "not checked against the audit chain",
    }


def test_data_survives_reopening_the_store(settings: CollectorSettings) -> None:
    first = Store.open(settings)
    first.migrate()
    add(first, span(attributes=decision_span()))
    first.close()
    again = Store.open(settings)
    try:
        assert len(again.audit(AuditFilters())["items"]) == 1
        assert again.ping()
    finally:
        again.close()
    assert not again.ping()


def test_alerts_are_listed_newest_first(store: Store) -> None:
    alert = {"bastion.alert.type": "policy_rejected", "bastion.alert.message": "bad edit"}
    add(store, span(start=NOW, attributes={**alert, "bastion.alert.message": "older"}))
    add(store, span(start=NOW + 1_000, attributes=alert))
    add(store, span(start=NOW + 2_000, attributes=decision_span()))
    items = store.alerts(10)
    assert [(i["type"], i["message"]) for i in items] == [("policy_rejected", "bad edit"), ("policy_rejected", "older")]


def test_an_audit_item_says_how_a_held_call_was_approved_and_by_whom(store: Store) -> None:
    approval = {"bastion.approval.status": "approved", "bastion.approval.approver": "bob"}
    add(store, span(attributes=decision_span(kind="mcp", **approval)))
    [item] = store.audit(AuditFilters())["items"]
    assert (item["approval_status"], item["approval_approver"]) == ("approved", "bob")
