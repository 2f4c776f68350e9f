//! The OpenAPI document: served, self-contained (every `$ref` resolves inside it), and in step
//! with the router (every documented operation is routed and authenticated).

use flywheel_tests::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::Value;

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_is_served_complete_and_true_to_the_router() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "unresolved $ref {r}");
    }
    let ops = flywheel_gateway::openapi::OPERATIONS;
    assert_eq!(
        doc["paths"].as_object().map(|p| p.values().map(|v| v.as_object().map_or(0, |o| o.len())).sum::<usize>()),
        Some(ops.len())
    );
    for op in ops {
        let path = op
            .path
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{agent}", "branding")
            .replace("{kind}", "brand_positioning")
            .replace("{period}", "month");
        let method = Method::from_bytes(op.method.to_uppercase().as_bytes()).expect("method");
        let (status, body) = app.call(method, &path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {}: {body}", op.method, op.path);
    }
}
