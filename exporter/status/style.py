# ruff: noqa: E501
"""The page's only stylesheet, inline and allowed by its hash in the CSP header."""

STYLE = """:root{color-scheme:light dark;--fg:#1b1f24;--muted:#57606a;--bg:#fff;--line:#d0d7de;--up:#1a7f37;--down:#b3261e;--warn:#8a5a00;--bar:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9ea7b3;--bg:#0d1117;--line:#30363d;--up:#3fb950;--down:#ff7b72;--warn:#d29922;--bar:#58a6ff}}
*{box-sizing:border-box}
body{margin:0;padding:1rem;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:1.35rem;margin:0 0 .3rem}
h2{font-size:1.1rem;margin:1.6rem 0 .4rem}
h3{font-size:1rem;margin:1rem 0 .3rem}
a{color:var(--bar)}
p{margin:.25rem 0}
.muted,.note{color:var(--muted)}
.summary{font-size:1.05rem;font-weight:600}
.state{font-weight:700;white-space:nowrap}
.up{color:var(--up)}
.down,.bad{color:var(--down)}
.warn{color:var(--warn)}
.wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;vertical-align:top;padding:.35rem .6rem .35rem 0;border-bottom:1px solid var(--line)}
th{font-size:.85rem;color:var(--muted);font-weight:600}
td.n,th.n{text-align:right}
code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word}
.addr{font-weight:600;overflow-wrap:break-word;white-space:pre-wrap}
.err{white-space:pre-wrap;word-break:break-word}
.spark{display:block;margin-top:2px;margin-left:auto;color:var(--bar)}
.trend{display:flex;gap:.5rem;align-items:center}
.trend .spark{margin:0}
.spark polyline{fill:none;stroke:currentColor;stroke-width:1.5}
meter{width:6rem;height:.8rem;vertical-align:middle}
ul.reasons{margin:.2rem 0;padding-left:1.2rem}
footer{margin-top:2rem;font-size:.85rem;color:var(--muted)}
@media (max-width:720px){
body{padding:.6rem}
table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:100%}
table.cards thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
table.cards tr{display:grid;grid-template-columns:repeat(auto-fill,minmax(9.5rem,1fr));gap:.1rem .8rem;border:1px solid var(--line);border-radius:6px;margin:0 0 .6rem;padding:.3rem .5rem}
table.cards td:first-child,table.cards td[data-label=Pools],table.cards td[data-label=Fingerprint]{grid-column:1/-1}
table.cards caption{display:block;text-align:left}
table.cards td{border:0;padding:.15rem 0;text-align:left}
table.cards td::before{content:attr(data-label);display:block;font-size:.8rem;color:var(--muted)}
}"""
