"""One trace: every span with its attributes and events; the trace id comes from the URL or is typed in."""

from __future__ import annotations

import streamlit as st

from bastion import semconv
from bastion.dashboard import session, views
from bastion.dashboard.client import CollectorError

session.require()

st.title("Trace")
st.page_link("screens/audit.py", label="Back to the audit trail", icon="📜")
from_url = st.query_params.get("trace_id", "")
trace_id = st.text_input("Trace id", value=from_url, placeholder="32 hex characters").strip().lower()
if trace_id != from_url:
    st.query_params["trace_id"] = trace_id
if not trace_id:
    st.info("Enter a trace id, or select a row in the audit trail.")
    st.stop()
if not views.is_trace_id(trace_id):
    st.warning(f"{trace_id!r} is not a trace id: it must be 32 hex characters.")
    st.stop()

try:
    trace = session.client().trace(trace_id)
except CollectorError as e:
    st.error(f"The trace is unavailable. {e}")
    st.stop()
if trace is None:
    st.warning(f"The collector has no spans for trace {trace_id}.")
    st.stop()

spans = trace.get("spans") or []
tree = views.span_tree(spans)
decisions = sorted({str(d) for s in spans if (d := (s.get("attributes") or {}).get(semconv.BASTION_DECISION))})
spans_col, services_col, decision_col = st.columns(3)
spans_col.metric("Spans", len(spans))
services_col.metric("Services", len({s.get("service_name") for s in spans}))
decision_col.metric("Decision", ", ".join(decisions) or "—")
st.dataframe(views.span_rows(tree), hide_index=True)

for depth, span in tree:
    with st.expander(views.span_label(depth, span), expanded=len(tree) <= 3):
        parent = span.get("parent_span_id") or "none"
        started = views.show_time(span.get("timestamp"))
        st.caption(f"span {span.get('span_id')} · parent {parent} · started {started} UTC")
        if span.get("status_message"):
            st.write(f"Status message: {span['status_message']}")
        st.markdown("**Attributes**")
        st.json(span.get("attributes") or {})
        for event in span.get("events") or []:
            st.markdown(f"**Event** `{event.get('name')}` at {views.show_time(event.get('timestamp'))} UTC")
            st.json(event.get("attributes") or {})
        st.markdown("**Resource**")
        st.json(span.get("resource_attributes") or {}, expanded=False)
