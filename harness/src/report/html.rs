//! `index.html`: one self-contained page per run (inline CSS, JS and SVG; its Content Security
//! Policy forbids every fetch). The page is made from the run directory alone (`RunDir`).
//!
//! Safety: what came off the wire reaches the page only as JSON inside a script element whose
//! `<`, `>` and `&` are escaped, and the script puts it into the DOM with `textContent` and
//! attribute setters, never as markup. Everything the Rust side writes as HTML goes through
//! `escape`. The policy allows only the page's own script, by its hash.

use super::ladder;
use super::ladder_text::printable;
use super::run_dir::{ResultView, RunDir};
use crate::xml::escape;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;
use std::fmt::Write as _;

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#222}
h1{font-size:1.5em;margin:.6em 0 .2em} h2{font-size:1.2em;margin:1.4em 0 .4em}
table{border-collapse:collapse;margin:.4em 0} td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}
.v-pass{background:#d9f2d9}.v-fail{background:#f7c8c8}.v-error{background:#f1b07a}.v-inconclusive{background:#f4ecb0}.v-not-covered{color:#888}
.totals span{margin-right:1em;font-weight:600}
section.result{border-top:2px solid #ddd;margin-top:1.2em;padding-top:.4em}
section.result>h3{margin:.2em 0;font-size:1.05em}
pre{background:#f6f6f6;padding:.5em;overflow:auto;max-height:30em;white-space:pre-wrap}
tr.failed-step td{background:#f7c8c8;font-weight:600}
.ladder{overflow-x:auto;border:1px solid #ddd;margin:.4em 0}
.ladder svg text{font:12px ui-monospace,monospace}
.ladder .lane-name{font-weight:700}
.ladder .lifeline{stroke:#bbb;stroke-dasharray:4 3}
.ladder .tapline{stroke:#d7c9ee;stroke-dasharray:2 4}
g.arrow line{stroke-width:1.6} g.arrow{cursor:pointer}
g.arrow.sip line{stroke:#1f5fbf} g.arrow.sip polygon{fill:#1f5fbf}
g.arrow.xmpp line{stroke:#2a8a3a;stroke-dasharray:7 3} g.arrow.xmpp polygon{fill:#2a8a3a}
g.arrow.style-retransmission line{stroke-dasharray:2 3;opacity:.7}
g.arrow.style-dropped line{stroke:#c00} g.arrow.style-dropped text{fill:#c00}
g.arrow.style-tls line{stroke:#8a4fbf;stroke-width:3} g.arrow.style-unparsed text,g.arrow.style-lost text,g.arrow.style-fault text{fill:#b05a00}
g.arrow.style-closed line{stroke:#888;stroke-dasharray:1 3} g.arrow.style-filler line{stroke:#aaa}
g.arrow.in-failed-step rect.hl{fill:#f7c8c8} g.arrow.selected rect.hl{fill:#ffe98a}
g.mark line{stroke:#999} g.mark text{fill:#666} g.mark.failed line{stroke:#c00;stroke-width:2} g.mark.failed text{fill:#c00;font-weight:700}
.detail{display:none} .detail.open{display:block}
body.only>*:not(.shown):not(script){display:none}
"#;

const SCRIPT: &str = r##"
(function(){
"use strict";
var t0=performance.now();
var data=JSON.parse(document.getElementById("sixpac-data").textContent);
var NS="http://www.w3.org/2000/svg";
function el(name,attrs,text){var e=document.createElementNS(NS,name);for(var k in attrs){e.setAttribute(k,attrs[k]);}if(text!==undefined){e.textContent=text;}return e;}
function draw(box,r,taps){
  box.textContent="";
  var lanes=[];r.lanes.forEach(function(l,i){if(taps||l.kind!=="tap"){lanes.push(i);}});
  var col={};lanes.forEach(function(l,i){col[l]=i;});
  var W=170,X0=90,top=40,row=24,mrow=20;
  var rows=[];var mi=0;
  r.arrows.forEach(function(a){while(mi<r.marks.length&&r.marks[mi].at<=a.at){rows.push({m:r.marks[mi++]});}rows.push({a:a});});
  while(mi<r.marks.length){rows.push({m:r.marks[mi++]});}
  var h=top;rows.forEach(function(x){x.y=h+(x.a?row:mrow);h=x.y;});
  var width=X0+lanes.length*W+40,height=h+30;
  var svg=el("svg",{width:width,height:height,viewBox:"0 0 "+width+" "+height});
  lanes.forEach(function(l,i){var x=X0+i*W+W/2;var lane=r.lanes[l];
    svg.appendChild(el("text",{x:x,y:18,"text-anchor":"middle","class":"lane-name"},lane.name));
    svg.appendChild(el("line",{x1:x,y1:26,x2:x,y2:height-10,"class":lane.kind==="tap"?"tapline":"lifeline"}));});
  rows.forEach(function(x){
    if(x.m){var g=el("g",{"class":"mark"+(x.m.status!=="done"?" failed":"")});
      g.appendChild(el("line",{x1:4,y1:x.y-4,x2:width-4,y2:x.y-4}));
      g.appendChild(el("text",{x:8,y:x.y-7},"step "+x.m.label+(x.m.status!=="done"?"  \u2717 "+x.m.status:"")));
      svg.appendChild(g);return;}
    var a=x.a;var f=col[a.from],t=col[a.to];
    if(f===undefined||t===undefined){return;}
    var x1=X0+f*W+W/2,x2=X0+t*W+W/2;
    if(a.style==="dropped"){var tc=col[a.tap];x2=(tc!==undefined&&tc!==f)?X0+tc*W+W/2:(x1+x2)/2;}
    var g=el("g",{"class":"arrow "+a.proto+" style-"+a.style+(a.in_failed_step?" in-failed-step":""),"data-seq":a.seq});
    g.appendChild(el("rect",{"class":"hl",x:0,y:x.y-row+4,width:width,height:row,fill:"transparent"}));
    g.appendChild(el("text",{x:4,y:x.y-2,fill:"#888"},a.at.toFixed(3)));
    g.appendChild(el("line",{x1:x1,y1:x.y,x2:x2,y2:x.y}));
    var d=x2>x1?-1:1;
    if(a.style==="dropped"){g.appendChild(el("text",{x:x2-4,y:x.y+4},"\u2715"));}
    else{g.appendChild(el("polygon",{points:x2+","+x.y+" "+(x2+8*d)+","+(x.y-4)+" "+(x2+8*d)+","+(x.y+4)}));}
    var label=a.label+(a.note?" ["+a.note+"]":"");
    g.appendChild(el("text",{x:Math.min(x1,x2)+6,y:x.y-4},label));
    var tip=el("title",{},"frame "+a.seq+": "+label+(a.matched_by?" (matched by step "+a.matched_by+")":"")+(a.in_failed_step?" (the failed step)":""));g.appendChild(tip);
    g.addEventListener("click",function(){show(box,r,a,g);});
    svg.appendChild(g);});
  box.appendChild(svg);
}
function show(box,r,a,g){
  var sec=box.closest("section");var d=sec.querySelector(".detail");
  sec.querySelectorAll("g.arrow.selected").forEach(function(s){s.classList.remove("selected");});
  g.classList.add("selected");
  d.querySelector(".detail-title").textContent="frame "+a.seq+" at "+a.at.toFixed(6)+" s: "+a.label+(a.note?" ["+a.note+"]":"");
  d.querySelector(".detail-bytes").textContent=r.bytes[a.seq]||"";
  d.querySelector(".detail-normalized").textContent=r.normalized[a.seq]||"(not in the normalized trace: the tap's own account, or left out as volatile)";
  d.classList.add("open");
}
document.querySelectorAll(".ladder").forEach(function(box){
  var r=data.results[+box.getAttribute("data-result")];
  var cb=box.parentNode.querySelector("input.taps");
  draw(box,r,false);
  if(cb){cb.addEventListener("change",function(){draw(box,r,cb.checked);});}
});
// `#only=<file base>` shows that result alone (for a screenshot, or a link to one result).
var only=/^#only=(.+)$/.exec(decodeURIComponent(location.hash));
if(only){var keep=document.getElementById("s-"+only[1]);if(keep){document.body.classList.add("only");keep.classList.add("shown");}}
// `#f-<file base>-<seq>` opens that frame: a link to one frame can be shared.
var m=/^#f-(.+)-(\d+)$/.exec(decodeURIComponent(location.hash));
if(m){var sec=document.getElementById("s-"+m[1]);var g=sec&&sec.querySelector('g.arrow[data-seq="'+m[2]+'"]');
  if(g){var box=sec.querySelector(".ladder");show(box,data.results[+box.getAttribute("data-result")],data.results[+box.getAttribute("data-result")].arrows.filter(function(a){return String(a.seq)===m[2];})[0],g);g.scrollIntoView();}}
// How long drawing took, and how long since the navigation began (parsing included).
document.body.setAttribute("data-render-ms",(performance.now()-t0).toFixed(1));
document.body.setAttribute("data-ready-ms",performance.now().toFixed(1));
})();
"##;

/// The JSON a script element can hold: no `<`, `>` or `&` that HTML would see.
fn script_json(v: &Value) -> String {
    v.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

fn verdict_class(v: &str) -> String {
    format!("v-{}", v.replace(' ', "-"))
}

/// What the page's script draws for one result: the ladder, each frame's exact bytes (its
/// credentials masked) and its normalized block.
fn result_data(r: &ResultView) -> Value {
    let l = ladder::build(&r.frames, &r.cast, &r.steps);
    // Credentials are masked as `--redact-raw` masks them: the page is made to be shared.
    let bytes: serde_json::Map<String, Value> =
        r.frames.iter().map(|f| (f.seq.to_string(), Value::String(printable(&crate::trace::raw::redacted(f))))).collect();
    let normalized: serde_json::Map<String, Value> = r.normalized.iter().map(|(s, t)| (s.to_string(), Value::String(t.clone()))).collect();
    json!({ "lanes": l.lanes, "arrows": l.arrows, "marks": l.marks, "bytes": bytes, "normalized": normalized })
}

/// The page for a run directory.
pub fn render(run: &RunDir) -> String {
    let s = &run.summary;
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut body = String::new();
    let title = format!("sixpac run {}", str_of(s, "run_id"));
    let _ = write!(body, "<h1>{}</h1>", escape(&title, false));
    let totals = s.get("totals").cloned().unwrap_or(Value::Null);
    let _ = write!(
        body,
        "<p>sixpac {} · backend <b>{}</b> · {:.1} s · exit code {}</p><p class=\"totals\">",
        escape(&str_of(s, "sixpac_version"), false),
        escape(&str_of(s, "backend"), false),
        s.get("wall_seconds").and_then(Value::as_f64).unwrap_or(0.0),
        s.get("exit_code").and_then(Value::as_i64).unwrap_or(0)
    );
    for v in ["pass", "fail", "inconclusive", "error"] {
        let n = totals.get(v).and_then(Value::as_u64).unwrap_or(0);
        let _ = write!(body, "<span class=\"{}\" data-total=\"{v}\">{n} {v}</span>", verdict_class(v));
    }
    body.push_str("</p>");
    // Servers.
    body.push_str("<h2>Servers</h2><table><tr><th>profile</th><th>server</th><th>kind</th><th>backend</th><th>version</th><th>image</th><th>ready</th><th>taps</th></tr>");
    for sv in s.get("servers").and_then(Value::as_array).cloned().unwrap_or_default() {
        let taps: Vec<String> = sv.get("taps").and_then(Value::as_array).cloned().unwrap_or_default().iter().map(|t| format!("{}/{} {}", str_of(t, "proto"), str_of(t, "transport"), str_of(t, "addr"))).collect();
        let image = str_of(&sv, "image");
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&str_of(&sv, "profile"), false),
            escape(&str_of(&sv, "name"), false),
            escape(&str_of(&sv, "kind"), false),
            escape(&str_of(&sv, "backend"), false),
            escape(&str_of(&sv, "version"), false),
            escape(image.trim_start_matches("sha256:").get(..12).unwrap_or(&image), false),
            sv.get("ready_ms").and_then(Value::as_u64).map(|m| format!("{m} ms")).unwrap_or_else(|| "already up".into()),
            escape(&taps.join(", "), false)
        );
    }
    body.push_str("</table>");
    if let Some(clients) = s.get("clients").and_then(Value::as_object).filter(|c| !c.is_empty()) {
        body.push_str("<h2>Clients under test</h2><ul>");
        for (actor, c) in clients {
            let _ = write!(body, "<li>{}: {}</li>", escape(actor, false), escape(c.as_str().unwrap_or(""), false));
        }
        body.push_str("</ul>");
    }
    // The matrix: requirements × columns, each cell linking to the results behind it.
    let columns: Vec<String> = {
        let mut c: Vec<String> = run.results.iter().map(ResultView::column).collect();
        c.sort();
        c.dedup();
        c
    };
    if let Some(reqs) = s.get("requirements").and_then(Value::as_array).filter(|r| !r.is_empty()) {
        body.push_str("<h2>Requirements</h2><table class=\"matrix\"><tr><th>requirement</th><th>keyword</th><th>summary</th>");
        for c in &columns {
            let _ = write!(body, "<th>{}</th>", escape(c, false));
        }
        body.push_str("</tr>");
        for r in reqs {
            let id = str_of(r, "id");
            let _ = write!(body, "<tr><td>{}</td><td>{}</td><td>{}</td>", escape(&id, false), escape(&str_of(r, "keyword"), false), escape(&str_of(r, "summary"), false));
            for c in &columns {
                let cell = r.get("profiles").and_then(|p| p.get(c)).and_then(Value::as_str).unwrap_or("not covered").to_string();
                let behind: Vec<&ResultView> = run.results.iter().filter(|x| &x.column() == c && x.requirements.contains(&id)).collect();
                let _ = write!(body, "<td class=\"cell {}\" data-req=\"{}\" data-col=\"{}\" data-verdict=\"{}\">{}", verdict_class(&cell), escape(&id, true), escape(c, true), escape(&cell, true), escape(&cell, false));
                for x in behind {
                    let _ = write!(body, "<br><a href=\"#s-{}\">{}</a>", escape(&x.file_base(), true), escape(&x.scenario, false));
                }
                body.push_str("</td>");
            }
            body.push_str("</tr>");
        }
        body.push_str("</table>");
    }
    // Each result.
    body.push_str("<h2>Scenarios</h2><table><tr><th>scenario</th><th>profile</th><th>verdict</th><th>time</th><th>frames</th></tr>");
    for r in &run.results {
        let _ = write!(
            body,
            "<tr><td><a href=\"#s-{}\">{}</a></td><td>{}</td><td class=\"{}\">{}</td><td>{:.2} s</td><td>{}</td></tr>",
            escape(&r.file_base(), true),
            escape(&r.scenario, false),
            escape(&r.column(), false),
            verdict_class(&r.verdict),
            escape(&r.verdict, false),
            r.duration_ms as f64 / 1000.0,
            r.frames.len()
        );
    }
    body.push_str("</table>");
    let mut data = Vec::new();
    for (i, r) in run.results.iter().enumerate() {
        data.push(result_data(r));
        let _ = write!(
            body,
            "<section class=\"result\" id=\"s-{}\" data-frames=\"{}\" data-verdict=\"{}\"><h3>{} on {} <span class=\"{}\">{}</span></h3><p>{}</p>",
            escape(&r.file_base(), true),
            r.frames.len(),
            escape(&r.verdict, true),
            escape(&r.scenario, false),
            escape(&r.column(), false),
            verdict_class(&r.verdict),
            escape(&r.verdict, false),
            escape(&r.title, false)
        );
        if !r.message.is_empty() {
            let what = if r.verdict == "inconclusive" { "reason" } else { "message" };
            let _ = write!(body, "<p><b>{what}:</b></p><pre class=\"message\">{}</pre>", escape(&r.message, false));
        }
        if let Some(p) = &r.trace_problem {
            let _ = write!(body, "<p><b>traces:</b> {}</p>", escape(p, false));
        }
        if !r.steps.is_empty() {
            body.push_str("<table class=\"steps\"><tr><th>#</th><th>step</th><th>line</th><th>status</th><th>time</th></tr>");
            for (n, st) in r.steps.iter().enumerate() {
                let status = serde_json::to_value(st.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                let failed = !matches!(st.status, crate::runner::event::StepStatus::Done | crate::runner::event::StepStatus::Skipped);
                let _ = write!(
                    body,
                    "<tr{}><td>{}</td><td>{}</td><td>{}:{}</td><td>{}</td><td>{}</td></tr>",
                    if failed { " class=\"failed-step\"" } else { "" },
                    n + 1,
                    escape(&st.label, false),
                    st.line,
                    st.column,
                    escape(&status, false),
                    if st.status == crate::runner::event::StepStatus::Skipped { String::new() } else { format!("{:.0} ms", (st.end - st.start) * 1000.0) }
                );
            }
            body.push_str("</table>");
        }
        if let Some(d) = &r.diff {
            let _ = write!(body, "<p><b>trace diff</b> (expected → recorded):</p><pre class=\"diff\">{}</pre>", escape(d, false));
        }
        if !r.frames.is_empty() {
            let _ = write!(
                body,
                "<p>{} frames · <a href=\"{}\">raw</a> · <a href=\"{}\">normalized</a> · <a href=\"{}\">pcapng</a> · <code>{}</code> · <label><input type=\"checkbox\" class=\"taps\"> show the taps</label></p><div class=\"ladder\" data-result=\"{i}\"></div>",
                r.frames.len(),
                escape(&r.raw, true),
                escape(&r.trace, true),
                escape(&r.pcapng, true),
                escape(&r.tshark(), false)
            );
            body.push_str("<div class=\"detail\"><p class=\"detail-title\"></p><p>exact bytes:</p><pre class=\"detail-bytes\"></pre><p>normalized:</p><pre class=\"detail-normalized\"></pre></div>");
        }
        body.push_str("</section>");
    }
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(SCRIPT.as_bytes()));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'\">\
<title>{}</title><style>{STYLE}</style></head><body>{body}\
<script id=\"sixpac-data\" type=\"application/json\">{}</script><script>{SCRIPT}</script></body></html>\n",
        escape(&title, false),
        script_json(&json!({ "results": data }))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_text_cannot_close_the_data_script() {
        let v = json!({ "x": "</script><script>alert(1)</script>&amp;<!--" });
        let s = script_json(&v);
        assert!(!s.contains('<') && !s.contains('>') && !s.contains('&'), "{s}");
        assert_eq!(serde_json::from_str::<Value>(&s).unwrap(), v, "still the same JSON");
    }
}
