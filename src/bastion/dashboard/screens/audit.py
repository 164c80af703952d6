"""The audit trail: governance decisions, newest first, filtered and paged; a row opens its trace.

Each row says whether the collector matched it to its signed audit link; those it could not are
marked unverified and listed with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from bastion.dashboard import export, session, views
from bastion.dashboard.client import CollectorError

session.require()

PAGE_SIZES = (10, 25, 50, 100)
TABLE = "audit_table"
# Shown columns and their widths in pixels, to fit the main column of a 1440 px screen without scrolling
# sideways. Role, kind and trace id stay in the data: the operation names the kind, a selected row links
# its trace, and the export has every field.
COLUMNS = {
    "Time (UTC)": 160,
    "Agent": 85,
    "Decision": 80,
    "Rule": 140,
    "Operation": 100,
    "Model": 90,
    "Tokens in": 45,
    "Tokens out": 45,
    "HTTP": 45,
    "Duration (ms)": 60,
    "Audit": 80,
}


def _move(offset: int) -> None:
    st.session_state["audit_offset"] = offset
    st.session_state.pop(TABLE, None)


st.title("Audit trail")
now = datetime.now(UTC)
agent_col, decision_col, kind_col, range_col, size_col = st.columns([3, 2, 2, 2, 1])
agent = agent_col.text_input("Agent", key="audit_agent", placeholder="any agent").strip()
decision = decision_col.selectbox("Decision", views.DECISIONS, key="audit_decision")
kind = kind_col.selectbox("Kind", views.KINDS, key="audit_kind")
window = range_col.selectbox("Time range", [*views.TIME_RANGES, views.CUSTOM], key="audit_range")
page_size = size_col.selectbox("Rows", PAGE_SIZES, index=PAGE_SIZES.index(50), key="audit_page_size")
if window == views.CUSTOM:
    st.session_state.setdefault("audit_from", (now - timedelta(days=1)).replace(tzinfo=None))
    st.session_state.setdefault("audit_to", now.replace(tzinfo=None))
    from_col, to_col = st.columns(2)
    since = from_col.datetime_input("From (UTC)", key="audit_from")
    until = to_col.datetime_input("To (UTC)", key="audit_to")
else:
    since, until = views.time_window(window, now)

filters = (agent, decision, kind, window, (since, until) if window == views.CUSTOM else None, page_size)
if st.session_state.get("audit_filters") != filters:
    st.session_state["audit_filters"] = filters
    _move(0)
offset: int = st.session_state.get("audit_offset", 0)

try:
    page = session.client().audit(
        agent=agent or None,
        decision=None if decision == views.ANY else decision,
        kind=None if kind == views.ANY else kind,
        since=since,
        until=until,
        limit=page_size,
        offset=offset,
    )
except CollectorError as e:
    st.error(f"The audit trail is unavailable. {e}")
    st.stop()

items = page["items"]
doubtful = views.unverified(items)
if doubtful:
    st.warning(
        f"{len(doubtful)} of these records do not match a signed audit link: what they show may have been "
        "altered or forged in the store. Run `bastion audit verify`.\n\n"
        + "\n".join(f"- {line}" for line in doubtful[:10])
        + (f"\n- … and {len(doubtful) - 10} more" if len(doubtful) > 10 else "")
    )
if items:
    st.caption(f"Records {offset + 1}–{offset + len(items)}, newest first. Select a row to open its trace.")
    table = st.dataframe(
        views.audit_rows(items),
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=TABLE,
        column_order=list(COLUMNS),
        column_config={name: st.column_config.Column(width=width) for name, width in COLUMNS.items()},
    )
    selected = [i for i in table.selection.rows if i < len(items)]
    if selected:
        trace_id = items[selected[0]]["trace_id"]
        st.page_link("screens/trace.py", label=f"Open trace {trace_id}", icon="🔎", query_params={"trace_id": trace_id})
else:
    st.info("No audit records match these filters." if offset == 0 else "No more audit records.")

newer_col, older_col, refresh_col = st.columns(3)
newer_col.button("← Newer", key="audit_newer", disabled=offset == 0, on_click=_move, args=(max(0, offset - page_size),))
next_offset = page.get("next_offset")
older_col.button("Older →", key="audit_older", disabled=next_offset is None, on_click=_move, args=(next_offset or 0,))
refresh_col.button("Refresh", key="audit_refresh")

st.subheader("Export")
format_col, prepare_col, download_col = st.columns([2, 1, 1], vertical_alignment="bottom")
chosen = format_col.selectbox("Format", list(export.FORMATS), key="audit_export_format")
if prepare_col.button("Prepare export", key="audit_export_prepare", help="every record these filters match"):
    try:
        records, more = session.client().audit_all(
            export.MAX_RECORDS,
            agent=agent or None,
            decision=None if decision == views.ANY else decision,
            kind=None if kind == views.ANY else kind,
            since=since,
            until=until,
        )
    except CollectorError as e:
        st.error(f"The export is unavailable. {e}")
    else:
        st.session_state["audit_export"] = (filters, chosen, export.encode(records, chosen), len(records), more)
prepared = st.session_state.get("audit_export")
if prepared and prepared[:2] == (filters, chosen):
    _, name, data, count, more = prepared
    download_col.download_button(
        f"Download {count} records",
        data,
        file_name=export.file_name(name),
        mime=export.FORMATS[name][1],
        key="audit_export_download",
        on_click="ignore",
    )
    if more:
        st.caption(f"The file holds the newest {export.MAX_RECORDS} records; narrow the filters for older ones.")
