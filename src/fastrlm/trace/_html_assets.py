"""The inline stylesheet and script of the trace viewer page (no network, no CDN)."""

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;background:#fafbfc;
max-width:1100px;margin:0 auto;padding:1.5em}
h1{font-size:1.35em;margin:.2em 0;white-space:pre-wrap}h2{font-size:1.1em}
h3{font-size:1em;margin:0 0 .5em}.stats,.meta,.note,.label{color:#59636e;font-size:.88em}
pre,code{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f3f5f7;border:1px solid #e1e4e8;border-radius:6px;padding:.6em .8em;
overflow-x:auto;white-space:pre-wrap;word-break:break-word;margin:.3em 0}
pre.code{background:#f6f8fa}pre.output{background:#fff}pre.error{background:#fff0f0;
border-color:#f3b5b5}pre.answer{background:#f0fff4;border-color:#b7e4c7}
.lang{display:block;color:#8c959f;font-size:.85em}.prose{white-space:pre-wrap;margin:.4em 0}
header,.iter{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:1em;
margin:0 0 1em}
.facts th{text-align:left;padding-right:1em;color:#59636e;font-weight:500;vertical-align:top}
.facts td{word-break:break-all}
.block{border-left:3px solid #d0d7de;padding-left:.8em;margin:.8em 0}.block.bad{
border-color:#d1242f}.blockhead{font-weight:600;font-size:.9em}
.badge{display:inline-block;padding:0 .5em;border-radius:1em;font-size:.8em;background:#eaeef2}
.badge.ok{background:#dafbe1;color:#116329}.badge.warn{background:#fff8c5;color:#7d4e00}
.badge.bad{background:#ffebe9;color:#a40e26}.bad{color:#a40e26}
.banner{padding:.3em .7em;border-radius:6px;margin:.4em 0}.banner.bad{background:#ffebe9}
.banner.warn{background:#fff8c5}.banner.ok{background:#dafbe1}
details{margin:.4em 0}summary{cursor:pointer}
details.subcalls,details.child{border:1px solid #e1e4e8;border-radius:6px;padding:.4em .7em;
background:#fcfcfd}details.child{border-left:3px solid #8250df}
table.calls{border-collapse:collapse;font-size:.85em;width:100%}
table.calls td,table.calls th{border-bottom:1px solid #eaeef2;padding:.2em .4em;text-align:left;
vertical-align:top;word-break:break-word}
.tools{float:right}.tools button{font:inherit;font-size:.85em}
"""

JS = """
function setAll(open){document.querySelectorAll('details').forEach(function(d){d.open=open;});}
"""
