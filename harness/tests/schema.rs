//! The scenario language's two descriptions stay true to the parser: the JSON Schema
//! (docs/scenario.schema.json, `sixpac schema`) and the reference (docs/scenarios.md).

mod cli;

use cli::{root, sixpac, text};
use sixpac::scenario::parse::{ACTIONS, ACTOR_KEYS, RECEIVE_OPTIONS, VERBS};
use std::collections::BTreeSet;

fn schema() -> serde_json::Value {
    serde_json::from_str(sixpac::scenario::SCHEMA).expect("the schema is JSON")
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The fields serde names when it refuses an unknown one (`expected one of `a`, `b``).
fn fields_the_parser_takes(yaml: &str) -> BTreeSet<String> {
    let e = sixpac::scenario::parse_scenario(std::path::Path::new("t.yaml"), "t", yaml, &["p".to_string()], None).unwrap_err();
    let list = e.message.split("expected one of").nth(1).unwrap_or_else(|| panic!("{}", e.message));
    list.split(',').map(|f| f.trim().trim_matches('`').to_string()).filter(|f| !f.is_empty()).collect()
}

#[test]
fn sixpac_schema_prints_the_documented_schema() {
    let out = sixpac(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let doc = std::fs::read_to_string(root().join("docs/scenario.schema.json")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), doc);
}

#[test]
fn the_schema_names_every_construct_the_parser_accepts() {
    let s = schema();
    let top = fields_the_parser_takes("title: T\nprofiles: [p]\nnot_a_key: 1\nactors:\n  a: xmpp\nsteps: []\n");
    assert_eq!(keys(&s["properties"]), top, "top-level keys");
    let faults = fields_the_parser_takes("title: T\nprofiles: [p]\nfaults:\n  - { drop: MESSAGE, nonsense: 1 }\nactors:\n  a: xmpp\nsteps: []\n");
    assert_eq!(keys(&s["$defs"]["fault"]["properties"]), faults, "fault keys");
    assert_eq!(keys(&s["$defs"]["actor"]["properties"]), ACTOR_KEYS.iter().map(|k| k.to_string()).collect(), "actor keys");
    assert_eq!(keys(&s["$defs"]["receives"]["properties"]), RECEIVE_OPTIONS.iter().map(|k| k.to_string()).collect(), "receives options");
    let steps = s["$defs"]["step"]["patternProperties"].to_string();
    for v in VERBS {
        let (a, b) = v.split_once(' ').unwrap();
        assert!(steps.contains(a) && steps.contains(b), "verb {v}");
    }
    let actions = s["$defs"]["step"]["patternProperties"]["^[A-Za-z0-9_]+$"]["pattern"].as_str().unwrap();
    for a in ACTIONS {
        let words: String = a.split(' ').take_while(|w| !w.starts_with(['<', '['])).collect::<Vec<_>>().join(" ");
        assert!(actions.contains(&words), "action `{a}` is not in the schema's action pattern");
    }
}

#[test]
fn every_scenario_of_the_project_validates_against_the_schema_and_a_misspelt_one_does_not() {
    let script = r#"
import json, sys, glob, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
files = sorted(glob.glob(sys.argv[2] + '/scenarios/**/*.yaml', recursive=True) + glob.glob(sys.argv[2] + '/harness/tests/scenarios/**/*.yaml', recursive=True))
bad = [f for f in files if list(v.iter_errors(yaml.safe_load(open(f))))]
good = [f for f in bad if '/bad/' not in f]
refused = [f for f in bad if '/bad/' in f]
print(len(files), 'files;', 'invalid:', good, '; refused from bad/:', len(refused))
sys.exit(1 if good or not refused else 0)
"#;
    let have = std::process::Command::new("python3").args(["-c", "import jsonschema, yaml"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !have {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "CI=true but python3-jsonschema or python3-yaml is missing; scripts/install-servers installs them");
        eprintln!("SKIP: python3-jsonschema or python3-yaml missing");
        return;
    }
    let out = std::process::Command::new("python3")
        .args(["-c", script, root().join("docs/scenario.schema.json").to_str().unwrap(), root().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn the_reference_names_every_step_and_action() {
    let doc = std::fs::read_to_string(root().join("docs/scenarios.md")).unwrap();
    for v in VERBS {
        assert!(doc.contains(v), "docs/scenarios.md does not name the step `{v}`");
    }
    for a in ACTIONS {
        assert!(doc.contains(&format!("`{a}`")), "docs/scenarios.md does not name the action `{a}`");
    }
    for k in ACTOR_KEYS.iter().chain(RECEIVE_OPTIONS) {
        assert!(doc.contains(&format!("`{k}")), "docs/scenarios.md does not name `{k}`");
    }
    for k in keys(&schema()["properties"]) {
        assert!(doc.contains(&format!("`{k}:")), "docs/scenarios.md does not name the top-level key `{k}:`");
    }
}
