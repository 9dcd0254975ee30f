//! The hand-maintained `openapi.json` matches the routes in `src/api.rs`: every route and
//! every method it registers is documented, nothing is documented that does not exist,
//! every create that honours `Idempotency-Key` says so, and every `$ref` resolves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Every API route file (`src/api.rs` and `src/api_*.rs`), one after another.
static API_ALL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n == "api.rs" || (n.starts_with("api_") && n.ends_with(".rs"))))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect::<Vec<_>>().join(END_OF_FILE)
});

/// Between two route files, so that a handler's body never runs into the next file.
const END_OF_FILE: &str = "\n//@ end of file\n";

fn api_rs() -> &'static str {
    API_ALL.as_str()
}
const METHODS: &[&str] = &["get", "post", "put", "delete", "patch", "head", "options", "trace"];
/// Served at the root by `metrics::routes()`, documented with a per-path `servers` override.
const OPERATIONAL: &[&str] = &["/healthz", "/readyz", "/metrics"];

fn doc() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The text inside the parentheses that open at byte `open` (which must be `(`).
fn parenthesised(s: &str, open: usize) -> &str {
    let mut depth = 0usize;
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &s[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses after byte {open} in api.rs");
}

/// `(method, handler)` pairs of a method router such as `get(list_units).post(create_unit)`:
/// a method name called as a function (`get(`, `.post(`), not part of a longer identifier.
fn methods_of(router: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in METHODS {
        let pat = format!("{m}(");
        let mut from = 0;
        while let Some(at) = router[from..].find(&pat).map(|i| i + from) {
            from = at + pat.len();
            if router[..at].chars().next_back().is_some_and(is_ident) {
                continue; // e.g. `budget(`
            }
            let handler = parenthesised(router, at + m.len()).trim().to_string();
            out.push(((*m).to_string(), handler));
        }
    }
    out
}

/// Every `.route("path", methods)` in api.rs: path → method → handler.
fn routes() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut from = 0;
    while let Some(at) = api_rs()[from..].find(".route(").map(|i| i + from) {
        let args = parenthesised(api_rs(), at + ".route".len());
        from = at + ".route(".len();
        let args = args.trim_start();
        assert!(args.starts_with('"'), "a route path in api.rs is not a string literal: {args}");
        let end = args[1..].find('"').expect("unterminated route path") + 1;
        // axum's `{id}` captures are written the same way as OpenAPI path templates.
        let path = args[1..end].to_string();
        let methods = methods_of(&args[end + 1..]);
        assert!(!methods.is_empty(), "no HTTP method found for route {path}: {args}");
        let entry = out.entry(path.clone()).or_default();
        for (m, h) in methods {
            assert!(entry.insert(m.clone(), h).is_none(), "{m} {path} is registered twice");
        }
    }
    out
}

/// The body of `async fn name(` in api.rs, up to the next item.
fn handler_body(name: &str) -> &'static str {
    let start = api_rs().find(&format!("async fn {name}(")).unwrap_or_else(|| panic!("handler {name} not found in api.rs"));
    let rest = &api_rs()[start + 1..];
    let end = ["\nasync fn ", "\nfn ", "\npub fn ", "\nstruct ", "\n#[derive", "\n// -", END_OF_FILE]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
        .unwrap_or(rest.len());
    &api_rs()[start..start + 1 + end]
}

fn operation<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    &doc["paths"][path][method]
}

#[test]
fn the_route_parser_sees_the_known_routes() {
    let r = routes();
    assert!(r.len() >= 15, "too few routes parsed from api.rs: {r:?}");
    assert_eq!(r["/units/{id}"].keys().collect::<Vec<_>>(), ["get", "put"]);
    assert_eq!(r["/units"]["post"], "create_unit");
    assert!(handler_body("create_unit").contains("once("));
    assert!(!handler_body("update_unit").contains("once("));
    assert_eq!(methods_of("get(a).post(b)"), [("get".into(), "a".into()), ("post".into(), "b".into())]);
    assert!(methods_of("budget(x)").is_empty());
    // api.rs must not grow routes this test cannot see.
    for hidden in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
        assert!(!api_rs().contains(hidden), "api.rs uses {hidden}: teach tests/openapi.rs to read it");
    }
}

#[test]
fn is_openapi_3_1_with_the_api_prefix() {
    let d = doc();
    assert!(d["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")));
    assert!(d["info"]["title"].is_string() && d["info"]["version"].is_string());
    let servers: Vec<&str> = d["servers"].as_array().expect("servers").iter().filter_map(|s| s["url"].as_str()).collect();
    assert_eq!(servers, ["/api/v1"]);
    for p in OPERATIONAL {
        let item = &d["paths"][*p];
        assert!(item["get"].is_object(), "{p} is not documented");
        assert_eq!(item["servers"][0]["url"], "/", "{p} must override servers to the root");
    }
    let schemes = &d["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["sessionCookie"]["name"], "baton_session");
    assert_eq!(schemes["sessionCookie"]["in"], "cookie");
    assert_eq!(schemes["csrfToken"]["name"], "x-csrf-token");
    let err = &d["components"]["schemas"]["Error"];
    for f in ["error", "message", "message_zh", "message_en", "fields", "request_id"] {
        assert!(err["properties"][f].is_object(), "Error schema lacks {f}");
    }
}

#[test]
fn every_route_is_documented_with_its_methods() {
    let d = doc();
    let mut missing = Vec::new();
    for (path, methods) in routes() {
        let item = &d["paths"][&path];
        if !item.is_object() {
            missing.push(format!("path {path} is not in openapi.json"));
            continue;
        }
        for m in methods.keys() {
            if !item[m].is_object() {
                missing.push(format!("{} {path} is not in openapi.json", m.to_uppercase()));
            }
        }
        for m in METHODS {
            if item[*m].is_object() && !methods.contains_key(*m) {
                missing.push(format!("{} {path} is documented but api.rs does not register it", m.to_uppercase()));
            }
        }
    }
    assert!(missing.is_empty(), "openapi.json is out of date:\n{}", missing.join("\n"));
}

#[test]
fn every_documented_path_exists() {
    let d = doc();
    let routes = routes();
    let extra: Vec<&String> =
        d["paths"].as_object().expect("paths").keys().filter(|p| !routes.contains_key(*p) && !OPERATIONAL.contains(&p.as_str())).collect();
    assert!(extra.is_empty(), "documented but not routed in api.rs: {extra:?}");
}

#[test]
fn operations_document_responses_security_and_idempotency() {
    let d = doc();
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    for (path, methods) in routes() {
        for (m, handler) in &methods {
            let op = operation(&d, &path, m);
            let at = format!("{} {path}", m.to_uppercase());
            match op["operationId"].as_str() {
                Some(id) if ids.insert(id.to_string()) => {}
                other => problems.push(format!("{at}: missing or duplicate operationId {other:?}")),
            }
            let responses = op["responses"].as_object().cloned().unwrap_or_default();
            if !responses.keys().any(|k| k.starts_with('2')) {
                problems.push(format!("{at}: no success response"));
            }
            let body = handler_body(handler);
            let needs_caller = body.contains("Caller");
            let has_body = body.contains("Body(");
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty())
                || (op.get("security").is_none() && d["security"].as_array().is_some_and(|s| !s.is_empty()));
            if needs_caller != secured {
                problems.push(format!(
                    "{at}: handler {} a caller but the document says security is {}",
                    if needs_caller { "requires" } else { "does not require" },
                    if secured { "required" } else { "not required" }
                ));
            }
            let mut want: Vec<&str> = vec!["500"];
            if needs_caller {
                want.push("401");
                if m != "get" {
                    want.push("409"); // csrf_failed for cookie callers
                }
            }
            if has_body {
                want.extend(["400", "413", "415", "422"]);
                if !op["requestBody"]["content"]["application/json"]["schema"].is_object() {
                    problems.push(format!("{at}: reads a JSON body but documents none"));
                }
            }
            if body.contains(".require(") {
                want.push("403");
            }
            if body.contains("Path(") && body.contains("Uuid") {
                want.push("400");
            }
            if body.contains("Query(") {
                want.push("400");
            }
            for code in want {
                if !responses.contains_key(code) {
                    problems.push(format!("{at}: response {code} is not documented"));
                }
            }
            let idem_param = op["parameters"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["$ref"] == "#/components/parameters/IdempotencyKey"
                        || p["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case("Idempotency-Key"))
                })
            });
            let once = body.contains("once(");
            if once != idem_param {
                problems.push(format!(
                    "{at}: handler {} `once(...)` but Idempotency-Key is {}documented",
                    if once { "calls" } else { "does not call" },
                    if idem_param { "" } else { "not " }
                ));
            }
            if once {
                let replay = responses.iter().filter(|(k, _)| k.starts_with('2')).any(|(_, r)| r["headers"]["idempotent-replay"].is_object());
                if !replay {
                    problems.push(format!("{at}: success response lacks the idempotent-replay header"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn every_ref_resolves() {
    let d = doc();
    let mut all = Vec::new();
    refs(&d, &mut all);
    assert!(!all.is_empty());
    let broken: BTreeSet<&str> = all.into_iter().filter(|r| r.strip_prefix('#').is_none_or(|p| d.pointer(p).is_none())).collect();
    assert!(broken.is_empty(), "unresolved $ref: {broken:?}");
}

#[test]
fn enums_match_the_domain() {
    let d = doc();
    let enum_of = |name: &str| -> BTreeSet<String> {
        d["components"]["schemas"][name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("schema {name} has no enum"))
            .iter()
            .map(|v| v.as_str().expect("string enum").to_string())
            .collect()
    };
    let kinds: BTreeSet<String> = baton_domain::unit::UnitKind::ALL.iter().map(|k| k.as_str().to_string()).collect();
    assert_eq!(enum_of("UnitKind"), kinds);
    let perms: BTreeSet<String> = baton_domain::role::Permission::ALL.iter().map(|p| p.as_str().to_string()).collect();
    assert_eq!(enum_of("Permission"), perms);
}

#[test]
fn policy_params_document_every_group_and_field_with_its_default() {
    let d = doc();
    let schemas = &d["components"]["schemas"];
    let defaults = serde_json::to_value(baton_domain::policy::PolicyParams::default()).unwrap();
    let groups = defaults.as_object().unwrap();
    let documented = schemas["PolicyParams"]["properties"].as_object().unwrap();
    assert_eq!(documented.keys().collect::<BTreeSet<_>>(), groups.keys().collect::<BTreeSet<_>>(), "PolicyParams groups");
    let mut wrong = Vec::new();
    for (group, fields) in groups {
        let r = documented[group]["$ref"].as_str().unwrap_or_else(|| panic!("PolicyParams.{group} is not a $ref"));
        let schema = &schemas[r.trim_start_matches("#/components/schemas/")]["properties"];
        let fields = fields.as_object().unwrap();
        let names: BTreeSet<&String> = schema.as_object().unwrap_or_else(|| panic!("{r} has no properties")).keys().collect();
        assert_eq!(names, fields.keys().collect::<BTreeSet<_>>(), "fields of {group}");
        for (name, value) in fields {
            if &schema[name]["default"] != value {
                wrong.push(format!("{group}.{name}: documented {}, domain {value}", schema[name]["default"]));
            }
        }
    }
    assert!(wrong.is_empty(), "defaults that differ:\n{}", wrong.join("\n"));
}

/// The query fields a filter type reads, as serde names them when refusing an unknown one.
fn fields_of<T: serde::de::DeserializeOwned>() -> BTreeSet<String> {
    match serde_urlencoded::from_str::<T>("zz_not_a_field=1") {
        Ok(_) => panic!("a filter accepted an unknown field"),
        Err(e) => {
            let msg = e.to_string();
            msg.split('`').skip(3).step_by(2).map(str::to_string).collect()
        }
    }
}

/// The filters of each list's `Listing<…>` type (the API's own small query types by hand).
fn filters(ty: &str) -> Option<BTreeSet<String>> {
    use baton_store::*;
    Some(match ty {
        "NoFilter" => BTreeSet::new(),
        "GridQuery" => ["village_code"].map(String::from).into(),
        "AtQuery" => ["at"].map(String::from).into(),
        "units::UnitFilter" => fields_of::<units::UnitFilter>(),
        "users::UserFilter" => fields_of::<users::UserFilter>(),
        "audit::Search" => fields_of::<audit::Search>(),
        "trips::TripFilter" => fields_of::<trips::TripFilter>(),
        "alerts::AlertFilter" => fields_of::<alerts::AlertFilter>(),
        "persons::Filter" => fields_of::<persons::Filter>(),
        "risk_areas::HistoryFilter" => fields_of::<risk_areas::HistoryFilter>(),
        "rounds::RoundFilter" => fields_of::<rounds::RoundFilter>(),
        "rounds::MissingQuery" => fields_of::<rounds::MissingQuery>(),
        "testing::TubeFilter" => fields_of::<testing::TubeFilter>(),
        "testing::BatchFilter" => fields_of::<testing::BatchFilter>(),
        "whitelist::EntryFilter" => fields_of::<whitelist::EntryFilter>(),
        _ => return None,
    })
}

#[test]
fn every_list_documents_its_filters_and_its_paging() {
    assert_eq!(fields_of::<baton_store::units::UnitFilter>(), ["kind", "q"].map(String::from).into(), "the field reader");
    let d = doc();
    let mut problems = Vec::new();
    let mut lists = 0;
    for (path, methods) in routes() {
        for (m, handler) in &methods {
            let body = handler_body(handler);
            let op = operation(&d, &path, m);
            let at = format!("{} {path}", m.to_uppercase());
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let names: BTreeSet<String> = params.iter().filter_map(|p| p["name"].as_str().map(str::to_string)).collect();
            let paged = ["PageLimit", "PageCursor"].iter().all(|p| params.iter().any(|x| x["$ref"] == format!("#/components/parameters/{p}")));
            let Some(at_listing) = body.find("Listing<") else {
                if paged {
                    problems.push(format!("{at}: documents paging but its handler reads no Listing"));
                }
                continue;
            };
            lists += 1;
            if !paged {
                problems.push(format!("{at}: a list that does not document `limit` and `cursor`"));
            }
            let ty: String = body[at_listing + "Listing<".len()..].chars().take_while(|c| *c != '>').collect();
            match filters(&ty) {
                None => problems.push(format!("{at}: teach tests/openapi.rs the filters of {ty}")),
                Some(fs) => {
                    for f in fs.difference(&names) {
                        problems.push(format!("{at}: the filter `{f}` is not documented"));
                    }
                    for n in names.iter().filter(|n| !fs.contains(*n) && !path.contains(&format!("{{{n}}}"))) {
                        problems.push(format!("{at}: documents `{n}`, which the list does not read"));
                    }
                }
            }
            let mut schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
            while let Some(r) = schema["$ref"].as_str() {
                schema = d.pointer(r.trim_start_matches('#')).unwrap_or(&Value::Null);
            }
            if schema["properties"]["next_cursor"].is_null() {
                problems.push(format!("{at}: the answer does not document `next_cursor`"));
            }
            if !op["responses"]["422"]["description"].as_str().is_some_and(|s| s.contains("cursor_invalid")) {
                problems.push(format!("{at}: a bad `cursor` (422 `cursor_invalid`) is not documented"));
            }
        }
    }
    assert!(lists >= 25, "too few lists found: {lists}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
