//! A fake Kubernetes API server on 127.0.0.1:0, speaking enough of the API for the three
//! Tinkerbell resources: get, list (label selectors), watch (replay from a resource version,
//! 410 Gone once compacted), create (409 when it exists), merge patch (409 on a stale
//! resourceVersion), delete, SelfSubjectAccessReview and /version. Objects are validated
//! against the CRD schemas and get their defaults, as a real API server would do.
//!
//! Tests can cut every connection and stop listening (the API server is gone), start it
//! again on the same port, end the open watches, compact the event history, refuse
//! permissions, hide a CRD, and make patches conflict.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::schema;

const GROUP_PATH: &str = "/apis/tinkerbell.org/v1alpha1/namespaces/{ns}/{plural}";

#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    plural: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    rv: u64,
    uid: u64,
    objects: BTreeMap<(String, String, String), Value>,
    history: Vec<Change>,
    /// Watches from a resource version below this get 410 Gone.
    compacted_below: u64,
    denied: HashSet<(String, String)>,
    hidden: HashSet<String>,
    failing_patches: usize,
    requests: Vec<String>,
}

struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    /// Bumped to end every open watch.
    generation: watch::Sender<u64>,
    schemas: BTreeMap<&'static str, Value>,
}

pub struct FakeApi {
    pub url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
}

fn kind_of(plural: &str) -> Option<&'static str> {
    match plural {
        "hardware" => Some("Hardware"),
        "templates" => Some("Template"),
        "workflows" => Some("Workflow"),
        _ => None,
    }
}

fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reason, "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn json_response(v: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn matches_selector(obj: &Value, selector: Option<&str>) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let labels = &obj["metadata"]["labels"];
    sel.split(',').all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k.trim()].as_str() != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            let v = v.trim_start_matches('=');
            labels[k.trim()].as_str() == Some(v.trim())
        } else {
            labels.get(term.trim()).is_some()
        }
    })
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl Shared {
    fn record(&self, change: Change, store: &mut Store) {
        store.history.push(change.clone());
        let _ = self.changes.send(change);
    }

    fn validate(&self, plural: &str, obj: &Value) -> Result<(), String> {
        let schema = &self.schemas[plural];
        let mut checked = obj.clone();
        if let Some(m) = checked.get_mut("metadata").and_then(Value::as_object_mut) {
            // Server-set fields are not the client's to get right.
            for k in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
                m.remove(k);
            }
        }
        let errors = schema::errors(schema, &checked);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl FakeApi {
    pub async fn start() -> Arc<FakeApi> {
        // kube builds a rustls client config even for plain HTTP; with more than one crypto
        // provider compiled in (feature unification across the workspace) rustls will not
        // pick one itself, so say which, as `tinkerbell::connect` does in the server.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let schemas = BTreeMap::from([
            (
                "hardware",
                schema::crd_schema(include_str!("crds/tinkerbell.org_hardware.yaml")),
            ),
            (
                "templates",
                schema::crd_schema(include_str!("crds/tinkerbell.org_templates.yaml")),
            ),
            (
                "workflows",
                schema::crd_schema(include_str!("crds/tinkerbell.org_workflows.yaml")),
            ),
        ]);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                rv: 100,
                ..Default::default()
            }),
            changes: broadcast::channel(1024).0,
            generation: watch::channel(0).0,
            schemas,
        });
        let fake = Arc::new(FakeApi {
            url: format!("http://{addr}"),
            addr,
            shared,
            server: Mutex::new(None),
        });
        fake.serve(listener);
        fake
    }

    fn serve(&self, listener: TcpListener) {
        let app = Router::new()
            .route("/version", get(version))
            .route(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                post(access_review),
            )
            .route(GROUP_PATH, get(list_or_watch).post(create))
            .route(
                &format!("{GROUP_PATH}/{{name}}"),
                get(get_one).patch(patch).delete(delete),
            )
            .layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                log_request,
            ))
            .with_state(self.shared.clone());
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the task drops it, cutting them all.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let svc = TowerToHyperService::new(app.clone());
                        conns.spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        *self.server.lock().unwrap() = Some(task);
    }

    /// The API server goes away: connections are cut and nothing listens any more.
    pub async fn stop(&self) {
        let task = self.server.lock().unwrap().take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }

    /// The API server comes back on the same address with the same objects.
    pub async fn restart(&self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        self.serve(socket.listen(64).unwrap());
    }

    /// Ends every open watch (a load balancer timing out, say).
    pub fn end_watches(&self) {
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Forgets the event history: watches from any earlier version now get 410 Gone.
    pub fn compact(&self) {
        let mut s = self.shared.store.lock().unwrap();
        s.compacted_below = s.rv + 1;
        s.history.clear();
    }

    pub fn deny(&self, verb: &str, resource: &str) {
        let mut s = self.shared.store.lock().unwrap();
        s.denied.insert((verb.into(), resource.into()));
    }

    /// Makes the CRD of `plural` absent (404 on every request for it).
    pub fn hide(&self, plural: &str) {
        self.shared
            .store
            .lock()
            .unwrap()
            .hidden
            .insert(plural.into());
    }

    /// The next `n` patches fail with 409 Conflict, as if someone wrote in between.
    pub fn fail_next_patches(&self, n: usize) {
        self.shared.store.lock().unwrap().failing_patches = n;
    }

    /// `METHOD path?query` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.store.lock().unwrap().requests.clone()
    }

    pub fn objects(&self, plural: &str) -> Vec<Value> {
        let s = self.shared.store.lock().unwrap();
        s.objects
            .iter()
            .filter(|((p, _, _), _)| p == plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let s = self.shared.store.lock().unwrap();
        s.objects
            .get(&(plural.into(), namespace.into(), name.into()))
            .cloned()
    }

    /// Stores an object as another client would create it (no validation).
    pub fn insert(&self, plural: &str, namespace: &str, mut obj: Value) {
        let mut s = self.shared.store.lock().unwrap();
        s.rv += 1;
        s.uid += 1;
        let rv = s.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        obj["metadata"]["uid"] = json!(format!("uid-{}", s.uid));
        obj["metadata"]["namespace"] = json!(namespace);
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        s.objects
            .insert((plural.into(), namespace.into(), name), obj.clone());
        self.shared.record(
            Change {
                rv,
                plural: plural.into(),
                namespace: namespace.into(),
                kind: "ADDED",
                object: obj,
            },
            &mut s,
        );
    }

    /// Sets an object's status as Tinkerbell's controllers would (the status subresource).
    pub fn set_status(&self, plural: &str, namespace: &str, name: &str, st: Value) {
        let mut s = self.shared.store.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        let key = (plural.to_string(), namespace.to_string(), name.to_string());
        let obj = s
            .objects
            .get_mut(&key)
            .expect("object to set the status of");
        obj["status"] = st;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let obj = obj.clone();
        self.shared.record(
            Change {
                rv,
                plural: plural.into(),
                namespace: namespace.into(),
                kind: "MODIFIED",
                object: obj,
            },
            &mut s,
        );
    }
}

async fn log_request(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let line = format!(
        "{} {}{}",
        req.method(),
        req.uri().path(),
        req.uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    );
    shared.store.lock().unwrap().requests.push(line);
    next.run(req).await
}

async fn version() -> Response {
    json_response(&json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-fake", "gitCommit": "",
        "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23",
        "compiler": "gc", "platform": "linux/amd64",
    }))
}

async fn access_review(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let mut review: Value = serde_json::from_slice(&body).unwrap_or_default();
    let attrs = &review["spec"]["resourceAttributes"];
    let mut resource = attrs["resource"].as_str().unwrap_or_default().to_string();
    if let Some(sub) = attrs["subresource"].as_str().filter(|s| !s.is_empty()) {
        resource = format!("{resource}/{sub}");
    }
    let verb = attrs["verb"].as_str().unwrap_or_default().to_string();
    let denied = shared
        .store
        .lock()
        .unwrap()
        .denied
        .contains(&(verb, resource));
    review["status"] = json!({ "allowed": !denied });
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        review.to_string(),
    )
        .into_response()
}

fn known(shared: &Shared, plural: &str) -> Option<Response> {
    let hidden = shared.store.lock().unwrap().hidden.contains(plural);
    if kind_of(plural).is_none() || hidden {
        return Some(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    None
}

async fn list_or_watch(
    State(shared): State<Arc<Shared>>,
    Path((ns, plural)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = known(&shared, &plural) {
        return r;
    }
    let selector = q.get("labelSelector").cloned();
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let from: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        return watch_response(shared, ns, plural, selector, from);
    }
    let s = shared.store.lock().unwrap();
    let items: Vec<Value> = s
        .objects
        .iter()
        .filter(|((p, n, _), v)| {
            *p == plural && *n == ns && matches_selector(v, selector.as_deref())
        })
        .map(|(_, v)| v.clone())
        .collect();
    json_response(&json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": format!("{}List", kind_of(&plural).unwrap_or_default()),
        "metadata": { "resourceVersion": s.rv.to_string() },
        "items": items,
    }))
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({ "type": kind, "object": object }).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch_response(
    shared: Arc<Shared>,
    ns: String,
    plural: String,
    selector: Option<String>,
    from: u64,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut generation = shared.generation.subscribe();
    // Replay and subscribe under one lock, so no change falls in between.
    let (replay, mut live, gone) = {
        let s = shared.store.lock().unwrap();
        let gone = from < s.compacted_below;
        let replay: Vec<Change> = s.history.iter().filter(|c| c.rv > from).cloned().collect();
        (replay, shared.changes.subscribe(), gone)
    };
    let wanted = move |c: &Change| {
        c.plural == plural && c.namespace == ns && matches_selector(&c.object, selector.as_deref())
    };
    tokio::spawn(async move {
        if gone {
            let st = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {from}"),
                "reason": "Expired", "code": 410,
            });
            let _ = tx.send(watch_line("ERROR", &st)).await;
            return;
        }
        let mut last = from;
        for c in replay.iter().filter(|c| wanted(c)) {
            last = c.rv;
            if tx.send(watch_line(c.kind, &c.object)).await.is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                change = live.recv() => match change {
                    Ok(c) if c.rv > last && wanted(&c) => {
                        last = c.rv;
                        if tx.send(watch_line(c.kind, &c.object)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                _ = generation.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let body =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn get_one(
    State(shared): State<Arc<Shared>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
) -> Response {
    if let Some(r) = known(&shared, &plural) {
        return r;
    }
    let s = shared.store.lock().unwrap();
    match s.objects.get(&(plural.clone(), ns, name.clone())) {
        Some(v) => json_response(v),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{plural}.tinkerbell.org \"{name}\" not found"),
        ),
    }
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path((ns, plural)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Some(r) = known(&shared, &plural) {
        return r;
    }
    let Ok(mut obj) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
    };
    let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value",
        );
    };
    if obj["metadata"]["namespace"]
        .as_str()
        .is_some_and(|n| n != ns)
    {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the namespace of the object does not match",
        );
    }
    if let Some(m) = obj.as_object_mut() {
        // The status subresource: create ignores it.
        m.remove("status");
    }
    schema::apply_defaults(&shared.schemas[plural.as_str()], &mut obj);
    if let Err(e) = shared.validate(&plural, &obj) {
        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e);
    }
    let mut s = shared.store.lock().unwrap();
    let key = (plural.clone(), ns.clone(), name.clone());
    if s.objects.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{plural}.tinkerbell.org \"{name}\" already exists"),
        );
    }
    s.rv += 1;
    s.uid += 1;
    let rv = s.rv;
    let meta = &mut obj["metadata"];
    meta["namespace"] = json!(ns);
    meta["resourceVersion"] = json!(rv.to_string());
    meta["uid"] = json!(format!("uid-{}", s.uid));
    meta["generation"] = json!(1);
    meta["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
    s.objects.insert(key, obj.clone());
    shared.record(
        Change {
            rv,
            plural,
            namespace: ns,
            kind: "ADDED",
            object: obj.clone(),
        },
        &mut s,
    );
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        obj.to_string(),
    )
        .into_response()
}

async fn patch(
    State(shared): State<Arc<Shared>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = known(&shared, &plural) {
        return r;
    }
    let merge_type = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/merge-patch+json"));
    if !merge_type {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "this fake only speaks merge patches",
        );
    }
    let Ok(p) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
    };
    let mut s = shared.store.lock().unwrap();
    if s.failing_patches > 0 {
        s.failing_patches -= 1;
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            "the object has been modified; please apply your changes to the latest version and try again",
        );
    }
    let key = (plural.clone(), ns.clone(), name.clone());
    let Some(current) = s.objects.get(&key).cloned() else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("\"{name}\" not found"),
        );
    };
    if let Some(want) = p["metadata"]["resourceVersion"].as_str() {
        if Some(want) != current["metadata"]["resourceVersion"].as_str() {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            );
        }
    }
    let mut next = current.clone();
    merge(&mut next, &p);
    schema::apply_defaults(&shared.schemas[plural.as_str()], &mut next);
    if let Err(e) = shared.validate(&plural, &next) {
        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e);
    }
    s.rv += 1;
    let rv = s.rv;
    next["metadata"]["resourceVersion"] = json!(rv.to_string());
    s.objects.insert(key, next.clone());
    shared.record(
        Change {
            rv,
            plural,
            namespace: ns,
            kind: "MODIFIED",
            object: next.clone(),
        },
        &mut s,
    );
    json_response(&next)
}

async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
) -> Response {
    if let Some(r) = known(&shared, &plural) {
        return r;
    }
    let mut s = shared.store.lock().unwrap();
    let key = (plural.clone(), ns.clone(), name.clone());
    let Some(mut obj) = s.objects.remove(&key) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("\"{name}\" not found"),
        );
    };
    s.rv += 1;
    let rv = s.rv;
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    shared.record(
        Change {
            rv,
            plural,
            namespace: ns,
            kind: "DELETED",
            object: obj.clone(),
        },
        &mut s,
    );
    json_response(&obj)
}
