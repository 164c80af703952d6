"""The Bastion dashboard: ``streamlit run src/bastion/dashboard/app.py``.

It reads only the collector's HTTP API, at ``BASTION_COLLECTOR_URL`` (default
``http://127.0.0.1:4318``). Pages: the audit trail (``/audit``), one trace (``/trace?trace_id=``)
approvals (``/approvals``: held calls, decisions, suspending and guiding agents) and alerts
(``/alerts``: rejected policy edits and other events to look at).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from bastion.dashboard.client import CollectorClient

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="Bastion", page_icon="🛡️", layout="wide")
navigation = st.navigation(
    [
        st.Page(PAGES / "audit.py", title="Audit trail", icon="📜", url_path="audit", default=True),
        st.Page(PAGES / "trace.py", title="Trace", icon="🔎", url_path="trace"),
        st.Page(PAGES / "approvals.py", title="Approvals", icon="✋", url_path="approvals"),
        st.Page(PAGES / "alerts.py", title="Alerts", icon="🚨", url_path="alerts"),
    ]
)


def _keep_token() -> None:
    st.session_state["approver_token"] = st.session_state.get("approver_token_input", "")


client = CollectorClient()
with st.sidebar:
    state = "connected" if client.health() else "unreachable"
    st.caption(f"Collector: {client.base_url} ({state})")
    # Deciding held calls and stepping in need an approver token (`bastion approvers add`).
    # Kept under a plain key too, so that it survives moving between pages.
    st.text_input(
        "Approver token",
        type="password",
        key="approver_token_input",
        on_change=_keep_token,
        help="bap_... from bastion approvers add",
    )
navigation.run()
