"""The inline stylesheet and script of the trace viewer page (no network, no CDN).

The script only ever puts trace text into the page through ``textContent`` and ``title``
(never ``innerHTML``), except the live view's refreshed pieces, which the server rendered and
escaped (``_html.render_parts``). Colours follow the system's light or dark scheme.
"""

CSS = """
:root{--fg:#1f2328;--bg:#f6f8fa;--card:#fff;--muted:#59636e;--line:#d8dee4;--soft:#eaeef2;
--code:#f6f8fa;--out:#fff;--errbg:#fff0f0;--errline:#f3b5b5;--okbg:#f0fff4;--okline:#b7e4c7;
--bad:#a40e26;--badbg:#ffebe9;--warn:#7d4e00;--warnbg:#fff8c5;--ok:#116329;--okb:#dafbe1;
--accent:#8250df;--link:#0969da;--turn:#0969da;--cell:#1a7f37;--tool:#bc4c00;--sub:#8c959f;
--child:#8250df;--err:#cf222e}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--card:#161b22;
--muted:#9198a1;--line:#30363d;--soft:#21262d;--code:#1c2128;--out:#0d1117;--errbg:#2d1517;
--errline:#6e2a2f;--okbg:#0f2418;--okline:#2e5b3c;--bad:#ff7b72;--badbg:#3c1618;--warn:#e3b341;
--warnbg:#3a2e05;--ok:#56d364;--okb:#12331d;--accent:#a371f7;--link:#58a6ff;--turn:#58a6ff;
--cell:#3fb950;--tool:#f0883e;--sub:#6e7681;--child:#a371f7;--err:#f85149}}
*{box-sizing:border-box}
html{color-scheme:light dark}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);
background:var(--bg);max-width:1240px;margin:0 auto;padding:1.2em 1.5em}
a{color:var(--link)}
h1{font-size:1.35em;margin:.2em 0;white-space:pre-wrap;overflow-wrap:break-word}
h2{font-size:1.1em;margin:1em 0 .4em}
h3{font-size:1em;margin:0 0 .5em}.stats,.meta,.note,.label{color:var(--muted);font-size:.88em}
pre,code{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:var(--code);border:1px solid var(--line);border-radius:6px;padding:.6em .8em;
overflow-x:auto;white-space:pre-wrap;overflow-wrap:break-word;margin:.3em 0;max-width:100%}
pre.output{background:var(--out)}pre.error{background:var(--errbg);border-color:var(--errline)}
pre.answer{background:var(--okbg);border-color:var(--okline)}
details.more{margin:-.3em 0 .3em}details.more>summary{color:var(--link);font-size:.88em}
.lang{display:block;color:var(--muted);font-size:.85em}
.prose{white-space:pre-wrap;overflow-wrap:break-word;margin:.4em 0}
header,.iter,#explorer{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:1em;margin:0 0 1em;min-width:0}
.facts{border-collapse:collapse;width:100%;table-layout:fixed}
.facts th{text-align:left;padding:0 1em 0 0;color:var(--muted);font-weight:500;
vertical-align:top;width:8.5em;white-space:nowrap}
.facts td{overflow-wrap:break-word}
.block{border-left:3px solid var(--line);padding-left:.8em;margin:.8em 0}
.block.bad{border-color:var(--err)}.blockhead{font-weight:600;font-size:.9em}
.badge{display:inline-block;padding:0 .5em;border-radius:1em;font-size:.8em;
background:var(--soft);white-space:nowrap}
.badge.ok{background:var(--okb);color:var(--ok)}
.badge.warn{background:var(--warnbg);color:var(--warn)}
.badge.bad{background:var(--badbg);color:var(--bad)}.bad{color:var(--bad)}
.badge.live{background:var(--soft);color:var(--link)}.banner.live{background:var(--soft)}
.banner{padding:.3em .7em;border-radius:6px;margin:.4em 0;overflow-wrap:break-word}
.banner.bad{background:var(--badbg)}.banner.warn{background:var(--warnbg)}
.banner.ok{background:var(--okb)}
details{margin:.4em 0}summary{cursor:pointer;overflow-wrap:break-word}
details.subcalls,details.child,details.tool{border:1px solid var(--line);border-radius:6px;
padding:.4em .7em;background:var(--card)}details.child{border-left:3px solid var(--accent)}
details.tool{border-left:3px solid var(--tool)}
.scroll{overflow-x:auto;max-width:100%}
table.grid{border-collapse:collapse;font-size:.85em;width:100%;table-layout:fixed}
table.grid td,table.grid th{border-bottom:1px solid var(--soft);padding:.2em .4em;
text-align:left;vertical-align:top;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
table.grid th{color:var(--muted);font-weight:500}
.num{text-align:right!important;font-variant-numeric:tabular-nums}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.w-id{width:5.5em}.w-model{width:12em}.w-role{width:6.5em}.w-n{width:4.8em}.w-lat{width:5.2em}
.w-tok{width:7.5em}.w-cost{width:6.5em}.w-sum{width:10em}
.calls{margin:.3em 0}details.call{margin:0;border-bottom:1px solid var(--soft);padding:.1em 0}
details.call>summary{display:flex;gap:.7em;align-items:baseline;white-space:nowrap;
font-size:.85em;min-width:0;padding:.15em 0}
details.call>summary::before{content:'\\25B8';color:var(--muted)}
details.call[open]>summary::before{content:'\\25BE'}
details.call>summary>span{flex:none}details.call>summary>.line{flex:1 1 auto;min-width:0;
overflow:hidden;text-overflow:ellipsis}details.call.bad>summary>.line{color:var(--bad)}
.vbody .vrow{cursor:pointer}.vrow.sel{background:var(--soft)}
.vrow:focus-visible{outline:2px solid var(--link);outline-offset:-2px}
#call-open{border:1px solid var(--line);border-left:3px solid var(--link);border-radius:6px;
padding:.5em .8em;margin:.6em 0;background:var(--card);min-width:0}
#call-open .head{display:flex;flex-wrap:wrap;gap:.2em .8em;align-items:baseline;
font-size:.9em}#call-open .head button{margin-left:auto}
#call-open button,button.open-whole{font:inherit;font-size:.85em;color:var(--fg);
background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:.1em .6em;
cursor:pointer}
ul.tree{list-style:none;padding-left:0;margin:.3em 0}ul.tree ul{list-style:none;
padding-left:1.2em;border-left:1px dashed var(--line);margin:.1em 0 .1em .4em}
ul.tree li{margin:.15em 0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
ul.tree .q{color:var(--fg)}
.tools{float:right}.tools button,.filters button{font:inherit;font-size:.85em;color:var(--fg);
background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:.1em .6em;
cursor:pointer}.filters button[aria-pressed=true]{background:var(--link);color:#fff;
border-color:var(--link)}.filters{margin:.3em 0 .5em;display:flex;flex-wrap:wrap;gap:.3em;
align-items:center}
.tl{width:100%;overflow:hidden}#timeline{display:block;width:100%}
.vlist{border:1px solid var(--line);border-radius:6px;font-size:.85em;overflow:hidden}
.vrow{display:grid;grid-template-columns:5.5em 11em 5.2em 7.5em 5.8em minmax(0,1fr) minmax(0,1fr);
height:26px;line-height:26px;border-bottom:1px solid var(--soft);padding:0 .3em}
.vrow>span{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;padding:0 .3em;min-width:0}
.vhead{color:var(--muted);background:var(--soft);font-weight:500}
.vbody{position:relative;height:52px;overflow-y:auto;overflow-x:hidden}
.vbody .vrow{position:absolute;left:0;right:0}.vrow.err>span:last-child{color:var(--bad)}
.vrow.run{color:var(--muted)}
html:not(.js) .js-only{display:none}
@media (max-width:700px){body{padding:.6em}.tools{float:none;margin-bottom:.4em}
.w-model{width:8em}.w-tok{width:6.5em}.w-role{width:5.8em}
.opt,.c-model,.c-tok,.c-prompt{display:none}
.vrow{grid-template-columns:5.6em 4.8em 5em minmax(0,1fr)}
header,.iter,#explorer{padding:.7em}.facts th{width:6em}}
"""

JS = r"""
(function(){
'use strict';
document.documentElement.classList.add('js');
var D=JSON.parse(document.getElementById('fastrlm-data').textContent);
var C=D.calls,S=D.spans,ROW=26,mode='all',order=null,pool=[],drawn=-1,lastTs=0;
var open={},children={},finished=!!D.finished,writing=D.writing;
var selected=-1,full={},T=null,panel=document.getElementById('call-open');
var body=document.getElementById('calls-body'),pad=document.getElementById('calls-pad');
var canvas=document.getElementById('timeline'),live=document.getElementById('live');
for(var i=0;i<C.flag.length;i++){if(C.flag[i]&4){open[C.run[i]+'|'+C.id[i]]=i;}}
var runIndex={};D.runs.forEach(function(r,i){runIndex[r[0]]=i;});
function num(v){v=Number(v);return isFinite(v)?v:0;}
function clip(v){return(v==null?'':String(v)).slice(0,D.preview_chars);}
function runOf(id,parent,depth){id=String(id==null?'':id);var i=runIndex[id];
  if(i===undefined){i=runIndex[id]=D.runs.length;D.runs.push([id,num(depth),-1]);}
  if(parent!=null&&D.runs[i][2]<0){D.runs[i][2]=runOf(parent);D.runs[i][1]=num(depth);}
  return i;}
function modelOf(name){name=String(name==null?'':name);var i=D.models.indexOf(name);
  if(i<0){i=D.models.length;D.models.push(name);}return i;}
function rel(ts){if(!D.t0){D.t0=ts;}return Math.round((ts-D.t0)*1e4)/1e4;}
function addCall(run,id,start,prompt,chars){var i=C.flag.length;C.run.push(run);C.id.push(id);
  C.model.push(modelOf(''));C.start.push(start);C.dur.push(0);C.tin.push(0);C.tout.push(0);
  C.cost.push(0);C.flag.push(4);C.prompt.push(prompt);C.reply.push('(running)');
  C.pchars.push(chars||0);C.rchars.push(0);return i;}
function span(run,kind,end,dur,label,bad){S.run.push(run);S.kind.push(kind);
  S.start.push(Math.round((end-dur)*1e4)/1e4);S.dur.push(Math.round(dur*1e4)/1e4);
  S.label.push(label);S.bad.push(bad?1:0);}
// The same mapping as _html_data.page_data, one event at a time (the live view).
function ingest(ev){var kind=ev.type,ts=num(ev.ts);lastTs=Date.now();
  if(kind==='run.started'){runOf(ev.run_id,ev.parent_run_id,ev.depth);if(!D.t0){D.t0=ts;}
    return false;}
  var run=runOf(ev.run_id,null,ev.depth),t=rel(ts),key=run+'|'+ev.call_id;
  if(kind==='subcall.started'){var s0=open[key]=addCall(run,String(ev.call_id),t,
    clip(ev.prompt_preview),num(ev.prompt_chars));
    if(ev.prompt){full[s0]={p:String(ev.prompt)};}return false;}
  if(kind==='subcall.finished'){var i=open[key],lat=num(ev.latency_s);delete open[key];
    if(i===undefined){i=addCall(run,String(ev.call_id),t-lat,'',0);}
    var whole=ev.error?String(ev.error):ev.response;
    if(whole){(full[i]=full[i]||{}).r=String(whole);}
    C.rchars[i]=ev.error?String(ev.error).length:num(ev.response_chars);
    var begin=C.start[i];C.model[i]=modelOf(ev.model);C.dur[i]=Math.max(t-begin,lat);
    C.tin[i]=num(ev.input_tokens);C.tout[i]=num(ev.output_tokens);C.cost[i]=num(ev.cost_usd);
    C.flag[i]=(ev.error?1:0)|(ev.cached?2:0);C.reply[i]=clip(ev.error?ev.error:
      ev.response_preview);return false;}
  if(kind==='model.response'){span(run,'turn',t,num(ev.latency_s),'turn '+ev.iteration,0);}
  else if(kind==='code.executed'){span(run,'cell',t,num(ev.duration_s),'cell '+ev.iteration+
    '.'+ev.block,ev.error||ev.timed_out);}
  else if(kind==='tool.finished'){span(run,'tool',t,num(ev.duration_s),String(ev.tool||'tool'),
    ev.error);}
  else if(kind==='child.started'){children[ev.child_run_id]=[run,t,clip(ev.prompt_preview)];}
  else if(kind==='child.finished'){var c=children[ev.child_run_id]||[run,t,''];
    delete children[ev.child_run_id];span(c[0],'child',t,t-c[1],c[2]||'child run',
    ev.stop_reason!=='final');}
  else if(kind==='run.finished'&&D.runs[run]&&D.runs[run][2]<0){finished=true;}
  return true;}

// ---- the sub-call list: filtered and sorted indices, only visible rows in the DOM ----
function sortIdx(key){var idx=[];for(var i=0;i<C.flag.length;i++){idx.push(i);}
  idx.sort(function(a,b){return key[b]-key[a]||a-b;});return idx;}
function makeOrder(){var n=C.flag.length,idx=[],i;
  if(mode==='errors'){for(i=0;i<n;i++){if(C.flag[i]&5){idx.push(i);}}}
  else if(mode==='slowest'){idx=sortIdx(C.dur);}
  else if(mode==='costliest'){idx=sortIdx(C.cost);}
  else{for(i=0;i<n;i++){idx.push(i);}}
  order=idx;pad.style.height=(idx.length*ROW)+'px';drawn=-1;
  body.style.height=Math.max(2*ROW,Math.min(idx.length*ROW,520,
    Math.round(window.innerHeight*0.6)))+'px';
  var errs=0;for(i=0;i<n;i++){if(C.flag[i]&1){errs++;}}
  document.getElementById('calls-note').textContent=n.toLocaleString()+' sub-call(s), '+
    errs.toLocaleString()+' failed'+(mode==='all'?'':' · showing '+idx.length.toLocaleString());
}
function cellText(el,text,cls){el.textContent=text;el.title=text;el.className=cls||'';}
function fmt(v,d){return v.toFixed(d);}
function row(el,i){var f=C.flag[i],s=el.children,run=D.runs[C.run[i]]||['',0];
  el.className='vrow'+(f&1?' err':'')+(i===selected?' sel':'');el.setAttribute('data-i',i);
  cellText(s[0],C.id[i]+(run[1]?' ·d'+run[1]:''),'mono');
  cellText(s[1],(D.models[C.model[i]]||'')+(f&2?' (cached)':''),'c-model');
  cellText(s[2],f&4?'…':fmt(C.dur[i],2)+'s','num');
  cellText(s[3],C.tin[i].toLocaleString()+'/'+C.tout[i].toLocaleString(),'num c-tok');
  cellText(s[4],'$'+fmt(C.cost[i],4),'num');cellText(s[5],C.prompt[i],'c-prompt');
  cellText(s[6],C.reply[i],'');}
function paint(force){if(!order){return;}var first=Math.floor(body.scrollTop/ROW);
  if(!force&&first===drawn){return;}drawn=first;
  var count=Math.min(order.length-first,Math.ceil(body.clientHeight/ROW)+2);
  while(pool.length<count){var el=document.createElement('div');el.className='vrow';
    el.setAttribute('role','button');el.tabIndex=0;
    for(var k=0;k<7;k++){el.appendChild(document.createElement('span'));}
    body.appendChild(el);pool.push(el);}
  for(var j=0;j<pool.length;j++){var p=pool[j];
    if(j<count){p.style.top=((first+j)*ROW)+'px';p.hidden=false;row(p,order[first+j]);}
    else{p.hidden=true;}}}
body.addEventListener('scroll',function(){paint(false);},{passive:true});

// ---- one sub-call opened (click, tap, Enter): its whole prompt and reply as the trace has
// them; texts longer than a row keeps come from the page's packed blob, unpacked once ----
function texts(){if(T){return Promise.resolve(T);}
  if(!D.texts||typeof DecompressionStream==='undefined'){T={p:{},r:{}};
    return Promise.resolve(T);}
  var bin=atob(D.texts),buf=new Uint8Array(bin.length);
  for(var k=0;k<bin.length;k++){buf[k]=bin.charCodeAt(k);}
  return new Response(new Blob([buf]).stream().pipeThrough(new DecompressionStream('gzip')))
    .text().then(function(t){T=JSON.parse(t);return T;},function(){T={p:{},r:{}};return T;});}
function el(tag,cls,text){var e=document.createElement(tag);if(cls){e.className=cls;}
  if(text!=null){e.textContent=text;}return e;}
function block(box,what,text,chars,cls,bad){
  box.appendChild(el('div','label'+(bad?' bad':''),what+(bad?'':' ('+
    chars.toLocaleString()+' chars)')));
  box.appendChild(el('pre',cls,text||'(none)'));
  if(!bad&&chars>String(text||'').replace(/\u2026$/,'').length){box.appendChild(el('p','note',
    D.texts_left_out?'this page keeps whole texts up to its size limit and shows a preview '+
    'here; fastrlm view --follow RUN serves every call whole':
    'the trace holds a preview of this '+what+': record whole prompts and replies with '+
    '--trace-full (Limits(trace_full_prompts=True))'));}}
// the whole texts of call i: its live events', the page's packed ones, else (a call the page
// did not pack) the live view's /call; what is not found anywhere stays the row's preview
function whole(i,t){var mine=full[i]||{},p=mine.p||t.p[i],r=mine.r||t.r[i];
  var want=(!p&&C.pchars[i]>C.prompt[i].length)||(!r&&C.rchars[i]>C.reply[i].length);
  if(!want||!D.live||!D.live.call){return Promise.resolve({p:p,r:r});}
  var run=D.runs[C.run[i]]||[''];
  return fetch(D.live.call+'?run='+encodeURIComponent(run[0])+'&id='+encodeURIComponent(C.id[i]),
    {cache:'no-store'}).then(function(res){return res.ok?res.json():{};}).then(function(x){
      return {p:p||x.prompt,r:r||x.error||x.reply};},function(){return {p:p,r:r};});}
function openCall(i){if(!(i>=0&&i<C.flag.length)){return;}selected=i;paint(true);
  var f=C.flag[i],run=D.runs[C.run[i]]||['',0],title=document.getElementById('co-title');
  title.textContent='sub-call '+C.id[i]+(run[1]?' (depth '+run[1]+')':'');
  document.getElementById('co-facts').textContent=[(D.models[C.model[i]]||'?')+
    (f&2?' (cached)':''),f&4?'running':fmt(C.dur[i],2)+'s',C.tin[i].toLocaleString()+' in / '+
    C.tout[i].toLocaleString()+' out tokens','$'+fmt(C.cost[i],4)].join(' \u00b7 ');
  panel.hidden=false;var box=document.getElementById('co-body');box.textContent='';
  texts().then(function(t){return whole(i,t);}).then(function(w){if(selected!==i){return;}
    block(box,'prompt',w.p||C.prompt[i],C.pchars[i],'code',false);
    if(f&1){block(box,'error',w.r||C.reply[i],0,'error',true);}
    else{block(box,'reply',f&4?'(no reply yet)':w.r||C.reply[i],C.rchars[i],'output',false);}});
  panel.scrollIntoView({block:'nearest'});}
body.addEventListener('click',function(e){var r=e.target.closest&&e.target.closest('.vrow');
  if(r&&r.hasAttribute('data-i')){openCall(Number(r.getAttribute('data-i')));}});
body.addEventListener('keydown',function(e){if(e.key!=='Enter'&&e.key!==' '){return;}
  var r=e.target.closest&&e.target.closest('.vrow');
  if(r&&r.hasAttribute('data-i')){e.preventDefault();openCall(Number(r.getAttribute('data-i')));}});
// a cell's sub-call whose texts the cell clips opens whole in the panel (the detail is redrawn
// live, so the click is caught on the document)
document.addEventListener('click',function(e){var b=e.target.closest&&
  e.target.closest('button.open-whole');if(!b){return;}
  var run=b.getAttribute('data-run'),id=b.getAttribute('data-call');
  for(var i=0;i<C.flag.length;i++){if(C.id[i]===id&&(D.runs[C.run[i]]||[''])[0]===run){
    openCall(i);return;}}});
document.getElementById('co-close').addEventListener('click',function(){panel.hidden=true;
  selected=-1;paint(true);});
document.querySelectorAll('.filters button').forEach(function(b){
  b.addEventListener('click',function(){mode=b.getAttribute('data-mode');
    document.querySelectorAll('.filters button').forEach(function(o){
      o.setAttribute('aria-pressed',String(o===b));});
    body.scrollTop=0;makeOrder();paint(true);});});

// ---- the timeline: run lanes (turns, cells, tools, children), packed sub-call lanes ----
function css(name){return getComputedStyle(document.documentElement)
  .getPropertyValue(name).trim()||'#888';}
var hit=[],geo=null;
function timeline(){var w=canvas.parentNode.clientWidth;if(!w){return;}
  var n=C.flag.length,ns=S.run.length,end=0,i;
  for(i=0;i<n;i++){end=Math.max(end,C.start[i]+C.dur[i]);}
  for(i=0;i<ns;i++){end=Math.max(end,S.start[i]+S.dur[i]);}
  var runs={},rl=[];for(i=0;i<ns;i++){if(!(S.run[i] in runs)){runs[S.run[i]]=rl.length;
    rl.push(S.run[i]);}}
  var lanes=[],lane=new Array(n),MAX=48,ord=[];for(i=0;i<n;i++){ord.push(i);}
  ord.sort(function(a,b){return C.start[a]-C.start[b];});
  for(var q=0;q<n;q++){i=ord[q];var l=0;while(l<lanes.length&&lanes[l]>C.start[i]+1e-9){l++;}
    if(l>=MAX){l=q%MAX;}lanes[l]=Math.max(lanes[l]||0,C.start[i]+C.dur[i]);lane[i]=l;}
  var nl=lanes.length,labelW=w<500?44:78,top=16,rh=12,runH=Math.min(rl.length,12)*rh;
  var lh=nl?Math.max(2,Math.min(10,Math.floor(150/nl))):0,subTop=top+runH+(runH?6:0);
  var h=subTop+nl*lh+4,dpr=window.devicePixelRatio||1;
  canvas.style.height=h+'px';canvas.width=Math.round(w*dpr);canvas.height=Math.round(h*dpr);
  var g=canvas.getContext('2d');g.setTransform(dpr,0,0,dpr,0,0);g.clearRect(0,0,w,h);
  var span_=Math.max(end,1e-3),x0=labelW,xw=w-labelW-4;
  function X(t){return x0+t/span_*xw;}
  g.font='11px system-ui,sans-serif';g.fillStyle=css('--muted');g.textBaseline='middle';
  for(var k=0;k<=4;k++){var tt=span_*k/4;g.fillText(tt.toFixed(tt<10?2:0)+'s',
    Math.min(X(tt),w-30),7);}
  hit=[];
  rl.slice(0,12).forEach(function(r,j){var run=D.runs[r]||['?',0];
    g.fillStyle=css('--muted');g.fillText(run[2]<0?'root':'child '+j+' (d'+run[1]+')',2,
      top+j*rh+rh/2);});
  var colors={turn:css('--turn'),cell:css('--cell'),tool:css('--tool'),child:css('--child')};
  var err=css('--err');
  for(i=0;i<ns;i++){var j=Math.min(runs[S.run[i]],11),y=top+j*rh+1;
    g.fillStyle=S.bad[i]?err:colors[S.kind[i]]||colors.turn;
    var x=X(S.start[i]),wd=Math.max(1.5,X(S.start[i]+S.dur[i])-x);
    g.fillRect(x,S.kind[i]==='child'?y+rh-4:y,wd,S.kind[i]==='child'?3:rh-5);
    hit.push([x,y,wd,rh-2,S.label[i]+' · '+S.dur[i].toFixed(2)+'s']);}
  if(nl){g.fillStyle=css('--muted');g.fillText('sub-calls',2,subTop+Math.min(nl*lh,24)/2);}
  // a lane's calls are drawn in start order, touching ones merged into one rectangle, so
  // 100,000 calls cost a few thousand fills; failures are drawn on top, one by one
  var sub=css('--sub'),curX=[],curE=[],bad=[],hgt=Math.max(1,lh-1);g.fillStyle=sub;
  for(q=0;q<n;q++){i=ord[q];if(C.flag[i]&1){bad.push(i);continue;}var ln=lane[i],
    xs=X(C.start[i]),xe=Math.max(xs+1,X(C.start[i]+C.dur[i]));
    if(curE[ln]!==undefined&&xs<=curE[ln]+0.5){curE[ln]=Math.max(curE[ln],xe);continue;}
    if(curE[ln]!==undefined){g.fillRect(curX[ln],subTop+ln*lh,curE[ln]-curX[ln],hgt);}
    curX[ln]=xs;curE[ln]=xe;}
  for(var ln2=0;ln2<nl;ln2++){if(curE[ln2]!==undefined){
    g.fillRect(curX[ln2],subTop+ln2*lh,curE[ln2]-curX[ln2],hgt);}}
  g.fillStyle=err;bad.forEach(function(b){var xb=X(C.start[b]);
    g.fillRect(xb,subTop+lane[b]*lh,Math.max(1,X(C.start[b]+C.dur[b])-xb),hgt);});
  geo={x0:x0,xw:xw,span:span_,top:subTop,lh:lh,nl:nl,lane:lane};
  var note=n.toLocaleString()+' sub-call(s), up to '+nl+(nl>=MAX?'+':'')+
    ' at once; '+ns.toLocaleString()+' turn, cell, tool and child span(s) over '+
    span_.toFixed(2)+'s. Root turns blue, cells green, tools orange, child runs purple, '+
    'failures red.';
  document.getElementById('tl-note').textContent=note;}
function callIndexAt(x,y){if(!geo||!geo.lh||y<geo.top){return -1;}
  var ln=Math.floor((y-geo.top)/geo.lh),t=(x-geo.x0)/geo.xw*geo.span,eps=2/geo.xw*geo.span;
  if(ln>=geo.nl){return -1;}
  for(var i=0;i<C.flag.length;i++){if(geo.lane[i]===ln&&C.start[i]<=t+eps&&
    C.start[i]+C.dur[i]>=t-eps){return i;}}return -1;}
function callAt(x,y){var i=callIndexAt(x,y);if(i<0){return '';}
  return C.id[i]+' · '+(D.models[C.model[i]]||'')+' · '+C.dur[i].toFixed(2)+'s · $'+
    C.cost[i].toFixed(4)+(C.flag[i]&1?' · failed: ':' · ')+C.reply[i]+' (click to open)';}
canvas.addEventListener('click',function(e){var r=canvas.getBoundingClientRect();
  openCall(callIndexAt(e.clientX-r.left,e.clientY-r.top));});
canvas.addEventListener('mousemove',function(e){var r=canvas.getBoundingClientRect(),
  x=e.clientX-r.left,y=e.clientY-r.top,t='';for(var i=0;i<hit.length;i++){var b=hit[i];
  if(x>=b[0]&&x<=b[0]+b[2]+2&&y>=b[1]&&y<=b[1]+b[3]){t=b[4];break;}}
  canvas.title=t||callAt(x,y);});

// ---- page controls ----
document.querySelectorAll('.tools button[data-all]').forEach(function(b){
  b.addEventListener('click',function(){var on=b.getAttribute('data-all')==='1';
    document.querySelectorAll('details').forEach(function(d){d.open=on;});});});
document.addEventListener('click',function(e){var a=e.target.closest&&
  e.target.closest('a[href^="#run-"]');if(!a){return;}
  var el=document.getElementById(decodeURIComponent(a.getAttribute('href').slice(1)));
  for(var p=el;p;p=p.parentElement){if(p.tagName==='DETAILS'){p.open=true;}}
  if(el){e.preventDefault();el.scrollIntoView({block:'start'});}});
var pending=0,redraw=false;
function frame(){redraw=false;makeOrder();paint(true);timeline();}
function schedule(){if(!redraw){redraw=true;requestAnimationFrame(frame);}}
window.addEventListener('resize',function(){timeline();paint(true);});
frame();
// when the list, filters and timeline became usable (read by benchmarks/viewer.py)
document.documentElement.setAttribute('data-ready-ms',String(Math.round(performance.now())));

// ---- the live view: server-sent events from the growing trace ----
if(!D.live){return;}
var partsBusy=false,partsAgain=false,partsAt=0;
function restore(box,keep){var all=box.querySelectorAll('details');
  keep.forEach(function(k){if(all[k]){all[k].open=true;}});}
function openOf(box){var out=[];box.querySelectorAll('details').forEach(function(d,i){
  if(d.open){out.push(i);}});return out;}
function parts(){if(partsBusy){partsAgain=true;return;}partsBusy=true;partsAt=Date.now();
  fetch(D.live.parts,{cache:'no-store'}).then(function(r){if(!r.ok){throw new Error(r.status);}
    return r.json();}).then(function(p){['summary','detail'].forEach(function(k){
      var box=document.getElementById(k),keep=openOf(box);box.innerHTML=p[k];
      restore(box,keep);});}).catch(function(){partsAgain=true;}).then(function(){
      partsBusy=false;if(partsAgain){partsAgain=false;setTimeout(parts,300);}});}
var partsTimer=0;
function wantParts(soon){if(partsTimer){return;}var wait=soon?80:
  Math.max(80,1000-(Date.now()-partsAt));partsTimer=setTimeout(function(){partsTimer=0;
  parts();},wait);}
function status(text,cls){live.hidden=false;live.textContent=text;live.className='badge '+cls;}
var es=new EventSource(D.live.events);
function liveState(){if(finished){status('finished','ok');}
  else if(writing===false){status('not finished: its writer is gone','bad');}
  else{status('live','ok');}}
es.onopen=function(){lastTs=lastTs||Date.now();liveState();};
es.onmessage=function(m){var structural=false;liveState();
  m.data.split('\n').forEach(function(line){
    if(!line){return;}var ev;try{ev=JSON.parse(line);}catch(x){return;}
    if(ingest(ev)){structural=true;}});
  schedule();wantParts(structural);if(finished){status('finished','ok');}};
es.addEventListener('waiting',function(){status('waiting for the run to start','warn');});
// the writer's lock (trace/_lock.py): a run killed before run.finished is gone, not live
es.addEventListener('writer',function(m){writing=m.data==='alive';liveState();
  if(!writing&&!finished){wantParts(true);}});
es.onerror=function(){status('reconnecting…','warn');};
setInterval(function(){if(finished||writing===false||!lastTs||
  live.textContent.indexOf('reconnecting')===0){return;}
  var quiet=Math.round((Date.now()-lastTs)/1000);
  if(quiet>=10){status('live · no event for '+quiet+'s','warn');}},1000);
})();
"""
