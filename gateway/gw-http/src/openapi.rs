//! The OpenAPI 3.1 document.
//!
//! It is built from the same declaration as the router (`api_routes` in `lib.rs`: each handler's
//! `#[utoipa::path]` gives both its route and its operation), so the document cannot miss a served route nor
//! describe one that is not served. This module holds what every operation shares: the info, tags and security
//! schemes ([`BaseDoc`]), and the problem responses ([`complete`]), which follow from what an operation is
//! (signed in, with an API key, with a JSON body, with ids in its path) rather than from lists repeated in every
//! handler. A handler's own annotation still names the statuses only it returns (409 `not-pairing`, say) with
//! their description; [`complete`] adds the shared ones it does not name.

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, Required};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::error::{FieldProblem, ProblemBody};

/// What the router adds its operations to.
#[derive(OpenApi)]
#[openapi(
    info(title = "WhatsApp API gateway", description = "Multi-tenant WhatsApp API. Errors are RFC 9457 problem+json; see /problems/{slug}."),
    components(schemas(ProblemBody, FieldProblem)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "problems", description = "What each problem type means"),
        (name = "auth", description = "Sign-in and tokens"),
        (name = "subscriptions", description = "Tenants and their tiers (operators)"),
        (name = "users", description = "Users of a subscription"),
        (name = "instances", description = "WhatsApp accounts"),
        (name = "api-keys", description = "An instance's API keys (shown once)"),
        (name = "audit", description = "Who did what"),
        (name = "sessions", description = "An instance's connection: connect, pair, restart, log out, live events"),
        (name = "messages", description = "Sending and reading messages; chat read receipts and presence"),
        (name = "contacts", description = "Contacts and groups"),
        (name = "webhooks", description = "An instance's webhook endpoints, deliveries and replays"),
        (name = "usage", description = "Usage per month, daily statistics, the calling key"),
        (name = "plugins", description = "Tenants' WebAssembly plugins: versions, bindings, errors, logs"),
        (name = "sandbox", description = "The simulated WhatsApp network (development and tests; off in production)"),
        (name = "cluster", description = "The nodes sharing the database (operators)"),
    )
)]
pub(crate) struct BaseDoc;

/// The complete document, as `/openapi.json` serves it.
#[derive(Debug)]
pub struct ApiDoc;

impl OpenApi for ApiDoc {
    fn openapi() -> Document {
        crate::routes_and_document().1
    }
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))));
    }
}

const PROBLEM_JSON: &str = "application/problem+json";

/// A problem response shared by many operations: its status, its name under `components/responses`, and what it
/// means (the problem types it carries).
struct Shared {
    status: &'static str,
    name: &'static str,
    description: &'static str,
}

const BAD_REQUEST: Shared = Shared {
    status: "400",
    name: "BadRequest",
    description: "`malformed-json`, `bad-request` or `invalid-cursor`: the body, query or headers cannot be read",
};
const UNAUTHORIZED: Shared = Shared {
    status: "401",
    name: "Unauthorized",
    description: "No credentials, or an invalid, expired or revoked token or API key (`unauthenticated`, \
                  `invalid-token`, `token-expired`, `invalid-api-key`, `api-key-revoked`, `api-key-expired`, \
                  `api-key-inactive`, `account-inactive`)",
};
const FORBIDDEN: Shared = Shared {
    status: "403",
    name: "Forbidden",
    description: "`forbidden` (the user's role may not do this) or `insufficient-scope` (the API key lacks the scope)",
};
const NOT_FOUND: Shared = Shared {
    status: "404",
    name: "NotFound",
    description: "`not-found`: no such resource, or not the caller's (a malformed id is reported the same way)",
};
const CONFLICT: Shared = Shared {
    status: "409",
    name: "Conflict",
    description: "The write conflicts with the resource's state: `conflict` (a unique value is taken; `key` names it), \
                  `inactive` (the subscription or instance is deactivated), `in-use`, `instance-limit-reached`, \
                  `plugin-limit-reached`",
};
const TIMEOUT: Shared =
    Shared { status: "408", name: "Timeout", description: "`timeout`: the request took longer than the server allows" };
const PAYLOAD_TOO_LARGE: Shared = Shared {
    status: "413",
    name: "PayloadTooLarge",
    description: "`payload-too-large`: the body is larger than the server accepts",
};
const UNSUPPORTED_MEDIA_TYPE: Shared = Shared {
    status: "415",
    name: "UnsupportedMediaType",
    description: "`unsupported-media-type`: the body must be `application/json`",
};
const UNPROCESSABLE: Shared = Shared {
    status: "422",
    name: "Unprocessable",
    description: "`validation`: a field is not acceptable; `errors` names each",
};
const TOO_MANY_REQUESTS: Shared = Shared {
    status: "429",
    name: "TooManyRequests",
    description: "`rate-limited`: the API key's or its subscription's requests-per-minute limit is reached; retry \
                  after `Retry-After` seconds",
};
const URI_TOO_LONG: Shared =
    Shared { status: "414", name: "UriTooLong", description: "`uri-too-long`: the request's URI is too long" };
const HEADERS_TOO_LARGE: Shared = Shared {
    status: "431",
    name: "HeadersTooLarge",
    description: "`headers-too-large`: the request's headers are too large",
};
const INTERNAL: Shared = Shared {
    status: "500",
    name: "Internal",
    description: "`internal`: a bug; the request id helps operators find it",
};
const UNAVAILABLE: Shared = Shared {
    status: "503",
    name: "Unavailable",
    description: "`unavailable`: a dependency (the database) is unreachable; retry after `Retry-After` seconds",
};

fn problem(description: &str) -> RefOr<Response> {
    RefOr::T(ResponseBuilder::new().description(description).content(PROBLEM_JSON, problem_content()).build())
}

/// The problems of an operation that needs the instance's live WhatsApp connection (or the sandbox's state).
pub(crate) struct NotConnected;

impl IntoResponses for NotConnected {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([(
            "409".to_owned(),
            problem(
                "`instance-not-connected` (the detail names the status: connect or pair it first) or `not-pairing` \
                 (no QR code or pairing code is waiting)",
            ),
        )])
    }
}

/// The problem of an operation that asks WhatsApp (through the instance's driver) to do something.
pub(crate) struct DriverFailure;

impl IntoResponses for DriverFailure {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([("502".to_owned(), problem("`driver-error`: WhatsApp refused or failed the command"))])
    }
}

fn problem_content() -> Content {
    Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem"))))
}

fn header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new().schema(ObjectBuilder::new().schema_type(Type::String)).description(Some(description)).build()
}

fn shared_response(shared: &Shared) -> Response {
    let mut response = ResponseBuilder::new().description(shared.description).content(PROBLEM_JSON, problem_content());
    match shared.status {
        "429" => {
            response = response
                .header("Retry-After", header("Seconds until a request may succeed"))
                .header("RateLimit-Policy", header("The quota that refused the request (IETF RateLimit fields)"))
                .header("RateLimit", header("What is left of that quota and when it resets"));
        }
        "503" => response = response.header("Retry-After", header("Seconds to wait before retrying")),
        _ => {}
    }
    response.build()
}

/// What an operation is, as far as the problems it can answer with are concerned.
struct Traits {
    signed_in: bool,
    /// Not a read: the store may refuse the write.
    writes: bool,
    api_key: bool,
    body: bool,
    json_body: bool,
    path_ids: bool,
    query: bool,
    sandbox: bool,
}

impl Traits {
    fn of(path: &str, method: &str, operation: &Operation) -> Self {
        // A security requirement names its scheme as its only key; serialising it is the public way to read it.
        let schemes: Vec<String> = operation
            .security
            .iter()
            .flatten()
            .filter_map(|requirement| serde_json::to_value(requirement).ok())
            .filter_map(|value| value.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
            .flatten()
            .collect();
        let parameters = operation.parameters.iter().flatten();
        let content = operation.request_body.iter().flat_map(|body| body.content.keys());
        Self {
            signed_in: !schemes.is_empty(),
            writes: method != "get",
            api_key: schemes.iter().any(|s| s == "api_key"),
            body: operation.request_body.is_some(),
            json_body: content.clone().any(|c| c == "application/json"),
            path_ids: path.contains('{'),
            query: parameters.clone().any(|p| p.parameter_in == ParameterIn::Query),
            sandbox: path.starts_with("/v1/sandbox/"),
        }
    }

    /// The shared problems this operation can answer with.
    fn problems(&self) -> Vec<&'static Shared> {
        // What the edge answers before any handler runs, and what any handler may meet.
        let mut problems = vec![&BAD_REQUEST, &TIMEOUT, &URI_TOO_LONG, &HEADERS_TOO_LARGE, &INTERNAL, &UNAVAILABLE];
        if self.signed_in {
            problems.extend([&UNAUTHORIZED, &FORBIDDEN]);
        }
        if self.api_key {
            problems.push(&TOO_MANY_REQUESTS);
        }
        if self.signed_in && self.writes {
            problems.push(&CONFLICT);
        }
        // Ids in the path name rows that may not exist; the sandbox answers 404 when it is switched off.
        if self.path_ids || self.sandbox {
            problems.push(&NOT_FOUND);
        }
        if self.body {
            problems.extend([&PAYLOAD_TOO_LARGE, &UNPROCESSABLE]);
        }
        if self.json_body {
            problems.push(&UNSUPPORTED_MEDIA_TYPE);
        }
        if self.query {
            problems.push(&UNPROCESSABLE);
        }
        problems
    }
}

/// A body declared `Option<T>` is one the client may leave out, not one it may send as JSON `null` (the server
/// reads an empty body as the defaults and refuses `null`): document `T`, not required.
fn optional_body(operation: &mut Operation) {
    let Some(body) = operation.request_body.as_mut() else { return };
    let is_null = |schema: &RefOr<Schema>| matches!(schema, RefOr::T(Schema::Object(object)) if object.schema_type == SchemaType::Type(Type::Null));
    let mut optional = false;
    for content in body.content.values_mut() {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema
            && one_of.items.len() == 2
            && let Some(inner) = one_of.items.iter().find(|s| !is_null(s))
            && one_of.items.iter().any(is_null)
        {
            content.schema = Some(inner.clone());
            optional = true;
        }
    }
    if optional {
        body.required = Some(Required::False);
    }
}

fn operations_mut(item: &mut utoipa::openapi::path::PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
        ("head", &mut item.head),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|o| (method, o)))
}

/// Adds to every operation the shared problem responses it can answer with (as references to
/// `components/responses`), keeping the ones its handler describes itself.
pub(crate) fn complete(document: &mut Document) {
    let mut used: BTreeMap<&'static str, &'static Shared> = BTreeMap::new();
    for (path, item) in document.paths.paths.iter_mut() {
        for (method, operation) in operations_mut(item) {
            optional_body(operation);
            for shared in Traits::of(path, method, operation).problems() {
                let responses = &mut operation.responses.responses;
                match responses.get_mut(shared.status) {
                    // The handler's own description is more precise; it still gets the shared headers.
                    Some(RefOr::T(own)) if !own.description.is_empty() => {
                        for (name, header) in shared_response(shared).headers {
                            own.headers.entry(name).or_insert(header);
                        }
                    }
                    _ => {
                        responses.insert(shared.status.to_owned(), RefOr::Ref(Ref::from_response_name(shared.name)));
                        used.insert(shared.name, shared);
                    }
                }
            }
        }
    }
    let components = document.components.get_or_insert_with(Default::default);
    for (name, shared) in used {
        components.responses.insert(name.to_owned(), RefOr::T(shared_response(shared)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

    fn document() -> serde_json::Value {
        serde_json::to_value(ApiDoc::openapi()).expect("the document serialises")
    }

    /// The committed `openapi.json` is the document the server serves, so every change to the API shows in
    /// review. After an intended change: `UPDATE_OPENAPI_SNAPSHOT=1 cargo test -p gw-http openapi`.
    #[test]
    fn the_document_matches_the_committed_snapshot() {
        let current = serde_json::to_string_pretty(&document()).expect("pretty") + "\n";
        if std::env::var_os("UPDATE_OPENAPI_SNAPSHOT").is_some() {
            std::fs::write(SNAPSHOT, &current).expect("write the snapshot");
            return;
        }
        let committed = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
        assert!(
            committed == current,
            "the OpenAPI document changed; review it and run `UPDATE_OPENAPI_SNAPSHOT=1 cargo test -p gw-http \
             openapi` to update {SNAPSHOT}"
        );
    }

    fn operations(doc: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
        let mut all = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                all.push((method.clone(), path.clone(), operation.clone()));
            }
        }
        all
    }

    #[test]
    fn every_operation_documents_its_problems_as_problem_json() {
        let doc = document();
        for (method, path, operation) in operations(&doc) {
            let responses = operation["responses"].as_object().expect("responses");
            let has = |status: &str| responses.contains_key(status);
            let name = format!("{method} {path}");
            for status in ["400", "408", "414", "431", "500", "503"] {
                assert!(has(status), "{name} lacks {status}");
            }
            let signed_in = operation["security"].as_array().is_some_and(|s| !s.is_empty());
            if signed_in {
                assert!(has("401") && has("403"), "{name} is authenticated but lacks 401 or 403");
            }
            let by_key = operation["security"].as_array().into_iter().flatten().any(|s| s.get("api_key").is_some());
            if by_key {
                let headers = doc["components"]["responses"]["TooManyRequests"]["headers"].clone();
                assert!(has("429"), "{name} takes API keys but lacks 429");
                assert!(headers.get("Retry-After").is_some() && headers.get("RateLimit").is_some());
            }
            if operation["requestBody"]["content"].get("application/json").is_some() {
                for status in ["413", "415", "422"] {
                    assert!(has(status), "{name} takes JSON but lacks {status}");
                }
            }
            if path.contains('{') {
                assert!(has("404"), "{name} has ids in its path but lacks 404");
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let response = match response["$ref"].as_str() {
                        Some(reference) => {
                            let name = reference.trim_start_matches("#/components/responses/");
                            doc["components"]["responses"][name].clone()
                        }
                        None => response.clone(),
                    };
                    let schema = &response["content"]["application/problem+json"]["schema"]["$ref"];
                    assert_eq!(schema, "#/components/schemas/Problem", "{name} {status} is not problem+json");
                }
            }
        }
    }

    #[test]
    fn rotation_bodies_are_optional_objects() {
        let doc = document();
        for path in
            ["/v1/instances/{id}/api-keys/{key_id}/rotate", "/v1/instances/{id}/webhooks/{webhook_id}/rotate-secret"]
        {
            let body = &doc["paths"][path]["post"]["requestBody"];
            assert_eq!(body["required"], false, "{path}: {body}");
            let schema = &body["content"]["application/json"]["schema"];
            assert!(schema["$ref"].is_string(), "{path}: the body, when sent, is an object: {schema}");
        }
    }

    /// The routes the product is built around are all in the document (issue 13 found 23 missing).
    #[test]
    fn the_session_messaging_and_sandbox_routes_are_documented() {
        let doc = document();
        let documented: Vec<(String, String)> = operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
        for (method, path) in [
            ("post", "/v1/instances/{id}/connect"),
            ("post", "/v1/instances/{id}/restart"),
            ("post", "/v1/instances/{id}/logout"),
            ("get", "/v1/instances/{id}/qr"),
            ("get", "/v1/instances/{id}/qr.png"),
            ("post", "/v1/instances/{id}/pair-code"),
            ("post", "/v1/instances/{id}/messages"),
            ("get", "/v1/instances/{id}/messages"),
            ("get", "/v1/instances/{id}/messages/{message_id}"),
            ("post", "/v1/instances/{id}/chats/{chat}/read"),
            ("post", "/v1/instances/{id}/chats/{chat}/presence"),
            ("get", "/v1/instances/{id}/contacts"),
            ("get", "/v1/instances/{id}/contacts/{contact_id}"),
            ("post", "/v1/instances/{id}/contacts/{contact_id}/block"),
            ("post", "/v1/instances/{id}/contacts/{contact_id}/unblock"),
            ("get", "/v1/instances/{id}/groups"),
            ("post", "/v1/instances/{id}/contacts/check"),
            ("get", "/v1/instances/{id}/events"),
            ("post", "/v1/sandbox/instances/{id}/scan"),
            ("post", "/v1/sandbox/instances/{id}/inbound"),
            ("post", "/v1/sandbox/instances/{id}/drop"),
            ("post", "/v1/sandbox/instances/{id}/unlink"),
            ("post", "/v1/sandbox/instances/{id}/replace"),
            ("post", "/v1/sandbox/groups"),
            ("get", "/v1/sandbox/instances/{id}/deliveries"),
            ("post", "/v1/sandbox/numbers"),
        ] {
            assert!(documented.contains(&(method.to_owned(), path.to_owned())), "{method} {path} is not documented");
        }
        let events = &doc["paths"]["/v1/instances/{id}/events"]["get"]["responses"]["200"]["content"];
        assert!(events.get("text/event-stream").is_some(), "the event stream is documented as SSE: {events}");
    }
}
