"""The Bastion dashboard: ``streamlit run src/bastion/dashboard/app.py``.

It reads only the collector's HTTP API, at ``BASTION_COLLECTOR_URL`` (default
``http://127.0.0.1:4318``). Pages: the audit trail (``/audit``) and one trace (``/trace?trace_id=``).
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
    ]
)
client = CollectorClient()
with st.sidebar:
    state = "connected" if client.health() else "unreachable"
    st.caption(f"Collector: {client.base_url} ({state})")
navigation.run()
