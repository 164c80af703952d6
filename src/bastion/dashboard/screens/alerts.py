"""Alerts: events people should look at, newest first (a rejected policy edit, say)."""

from __future__ import annotations

import streamlit as st

from bastion.dashboard import session, views
from bastion.dashboard.client import CollectorError

session.require()

st.title("Alerts")
st.caption("A rejected policy edit leaves the previous policy serving; fix the files and it reloads.")
try:
    alerts = session.client().alerts()
except CollectorError as e:
    st.error(f"The alerts are unavailable. {e}")
    st.stop()
if not alerts:
    st.success("No alerts.")
    st.stop()
rows = [
    {
        "time": views.cell(a.get("timestamp")),
        "type": views.cell(a.get("type")),
        "message": views.cell(a.get("message")),
        "policy still serving": views.cell(a.get("policy_version")),
        "from": views.cell(a.get("service_name")),
    }
    for a in alerts
]
st.dataframe(rows, hide_index=True)
