"""Overview: charts over the collector's aggregates (ClickHouse GROUP BY queries behind /api/overview):
decisions over time by effect, the rules that decided most, and denials and holds per agent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import altair as alt
import streamlit as st

from bastion.dashboard import session, views
from bastion.dashboard.client import CollectorError

session.require()

BUCKETS = 48  # time steps across the chosen range
COLORS = alt.Scale(domain=["allow", "deny", "review", "error"], range=["#4c9f70", "#d64545", "#e0a030", "#888888"])


def _data(rows: list[dict[str, Any]]) -> alt.Data:
    return alt.Data(values=rows)  # type: ignore[no-untyped-call]  # altair's Data is untyped


def _drill() -> None:
    """Set the audit trail's filters (its widgets' keys) to the overview's choices."""
    state = st.session_state
    state["audit_agent"] = state.get("overview_agent") or ""
    state["audit_decision"] = state.get("overview_decision") or views.ANY
    state["audit_range"] = state.get("overview_range") or next(iter(views.TIME_RANGES))


st.title("Overview")
window = st.selectbox("Time range", list(views.TIME_RANGES), index=1, key="overview_range")
since, until = views.time_window(window, datetime.now(UTC))
step = max(1, int((until - since).total_seconds() // BUCKETS))
try:
    data = session.client().overview(since, until, step)
except CollectorError as e:
    st.error(f"The overview is unavailable. {e}")
    st.stop()

over_time = data.get("decisions_over_time") or []
if not over_time:
    st.info("No decisions in this time range.")
    st.stop()
st.subheader("Decisions over time")
st.altair_chart(
    alt.Chart(_data(over_time))
    .mark_bar()
    .encode(
        x=alt.X("time:T", title="time (UTC)"),
        y=alt.Y("count:Q", title="decisions", stack=True),
        color=alt.Color("decision:N", scale=COLORS),
        tooltip=["time:T", "decision:N", "count:Q"],
    ),
    width="stretch",
)
rules_col, agents_col = st.columns(2)
with rules_col:
    st.subheader("Top rules")
    st.altair_chart(
        alt.Chart(_data(data.get("top_rules") or []))
        .mark_bar()
        .encode(
            y=alt.Y("rule:N", sort="-x", title=None),
            x=alt.X("count:Q", title="decisions"),
            color=alt.Color("decision:N", scale=COLORS),
            tooltip=["rule:N", "decision:N", "count:Q"],
        ),
        width="stretch",
    )
with agents_col:
    st.subheader("Denials and holds per agent")
    agents = data.get("agents") or []
    rows = [
        {"agent": a["agent_id"] or "(unknown)", "decision": kind, "count": a[field]}
        for a in agents
        for kind, field in (("deny", "denials"), ("review", "holds"))
        if a[field]
    ]
    if rows:
        st.altair_chart(
            alt.Chart(_data(rows))
            .mark_bar()
            .encode(
                y=alt.Y("agent:N", sort="-x", title=None),
                x=alt.X("count:Q", title="calls"),
                color=alt.Color("decision:N", scale=COLORS),
                tooltip=["agent:N", "decision:N", "count:Q"],
            ),
            width="stretch",
        )
    else:
        st.success("No denials or holds.")
    st.dataframe(
        [{"Agent": a["agent_id"], "Calls": a["calls"], "Denials": a["denials"], "Holds": a["holds"]} for a in agents],
        hide_index=True,
    )

st.subheader("Drill into the audit trail")
agent_col, decision_col, open_col = st.columns([3, 2, 1], vertical_alignment="bottom")
names = [str(a["agent_id"]) for a in agents if a["agent_id"]]
agent_col.selectbox("Agent", ["", *names], format_func=lambda a: a or "any agent", key="overview_agent")
decision_col.selectbox("Decision", views.DECISIONS, key="overview_decision")
if open_col.button("Open in the audit trail", key="overview_drill", on_click=_drill):
    st.switch_page("screens/audit.py")
