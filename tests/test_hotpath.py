"""The compiled hot path holds no Python objects per packet: Cython's own
annotation (`cython -a`) of the proxy loop, read line by line.  Every line
of the per-message functions must be pure C (score 0), but for the borrowed
reference to the loop's reused Message (score 1); Python is allowed only
where the control plane is called on purpose (hooks, once per call or per
registration) and in set-up code."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Per-message functions of ext/proxy.pxi (UDP, TCP, stateless, stateful,
# balancer) and where each may enter Python.
HOT = {
    "_drain", "_flush", "_queue", "_send", "_send_up", "_send_down", "_handle", "_check",
    "_request", "_forward_stateless", "_request_stateful", "_run", "_route", "_branch",
    "_prepare", "_target", "_push_via", "_add_rr", "_apply", "_our_vias", "_answered",
    "_local_reply", "_send_cancel_or_ack", "_response", "_response_stateless",
    "_via_is_ours", "_reply", "_build_reply", "_has_tag", "_relay_direct", "_direct",
    "_fanout", "_on_probe", "_won", "_no_winner", "_answer_probe", "_conn_read",
    "_conn_write", "_conn_flush", "_tcp_send", "_conn_index", "_names_us", "_ruri_is_us",
    "_delegate", "_not_on_route", "_relayed_invite", "_relay_new", "_count_relayed",
    "relay_key", "dlg_find", "dlg_put", "dlg_slot", "sent_by", "_relay",
    # ext/deleg.pxi: the delegation decision, once per new INVITE
    "decide", "_lowest", "dg_visited", "dg_parse_identity", "undo_delegation",
}
# Not listed, on purpose: _on_new (calls the on_invite hook, once per new
# call and only when one is set), _local and _decided (the registrar, the
# OPTIONS hook and hook decisions), and the def methods of the control plane.


def annotate(tmp: Path) -> str:
    from Cython.Build import cythonize

    src = tmp / "src"
    shutil.copytree(ROOT / "ext", src / "ext")
    (src / "sipfast").mkdir()
    shutil.copy(ROOT / "sipfast" / "_core.pxd", src / "sipfast" / "_core.pxd")
    (src / "sipfast" / "__init__.py").write_text("")
    from setuptools import Extension

    ext = Extension("sipfast._core", sources=[str(src / "ext" / "core.pyx")])
    cythonize([ext], include_path=[str(src), str(src / "ext"), str(src / "sipfast")],
              language_level=3, annotate=True, quiet=True, force=True,
              compiler_directives={"cdivision": True, "initializedcheck": False})
    return "".join((src / "ext" / f"{name}.html").read_text() for name in ("proxy", "deleg"))


def scored_lines(page: str) -> list[tuple[int, str]]:
    rows = re.findall(r'<pre class="cython line score-(\d+)"[^>]*>(.*?)</pre>', page, re.S)
    out = []
    for score, code in rows:
        text = html.unescape(re.sub(r"<[^>]+>", "", code))
        text = re.sub(r"^\s*\+?\d*:\s?", "", text)
        out.append((int(score), text))
    return out


def test_the_per_packet_functions_are_pure_c(tmp_path):
    lines = scored_lines(annotate(tmp_path))
    assert len(lines) > 1000
    func, offenders, seen = None, [], set()
    for score, text in lines:
        if re.match(r"\s*(?:def\s|cdef\s+class\s|class\s)", text):
            func = None         # a def method or a class: not a per-message function
            continue
        m = re.match(r"\s*cdef\s+(?:[\w*]+\s+)+?(\w+)\(", text)
        if m:
            func = m.group(1)
            seen.add(func)
            continue
        if func in HOT and score > 1:
            offenders.append((func, score, text.strip()))
    assert HOT <= seen, f"functions not found in the annotation: {HOT - seen}"
    assert offenders == [], "\n".join(f"{f} (score {s}): {t}" for f, s, t in offenders)
