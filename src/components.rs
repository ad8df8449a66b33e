//! Dapr component files (`--resources-path DIR`): the same YAML a user already has for daprd.
//!
//! Every `*.yaml` and `*.yml` file of the directory is read, in name order, and every document
//! in it. A document of another `kind` (Configuration, Subscription, Resiliency, ...) is none
//! of ours and is passed over. A `Component` must be `apiVersion: dapr.io/v1alpha1` and name
//! itself (`metadata.name`) and its type (`spec.type`). Lock stores of type `lock.redis`,
//! `lock.etcd` and `lock.in-memory` are taken; components of other types are skipped with a
//! note, and so are
//! those whose `scopes` leave this app id out, as daprd does. Anything malformed stops the
//! start with the file and the field it concerns: a lock store half understood is worse than
//! none.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

/// The bytes a component file may have: component files are small, and an unbounded read of
/// whatever the directory holds is not.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A lock store a component file declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreComponent {
    pub name: String,
    pub backend: Backend,
    /// The file it came from.
    pub file: PathBuf,
}

/// Where a store's leases live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `lock.in-memory`: this server's own lease table.
    InMemory,
    /// `lock.redis`.
    Redis(RedisSettings),
    /// `lock.etcd`: dlockd's own, on etcd's v3 API.
    Etcd(EtcdSettings),
}

impl Backend {
    /// The component type, as `/v1.0/metadata` reports it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Backend::InMemory => "lock.in-memory",
            Backend::Redis(_) => "lock.redis",
            Backend::Etcd(_) => "lock.etcd",
        }
    }
}

/// How daprd turns a resource id into a key of a shared store (the contract's key table).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyPrefix {
    /// `appid` (the default): `lock||<appId>||<resourceId>`, or `lock||<resourceId>` when the
    /// app id is empty.
    AppId,
    /// `name`: `lock||<storeName>||<resourceId>`.
    Name,
    /// `none`: `lock||<resourceId>`.
    None,
    /// Anything else, lower-cased: `lock||<prefix>||<resourceId>`.
    Custom(String),
}

impl KeyPrefix {
    fn parse(value: &str) -> KeyPrefix {
        match value {
            "" | "appid" => KeyPrefix::AppId,
            "name" => KeyPrefix::Name,
            "none" => KeyPrefix::None,
            other => KeyPrefix::Custom(other.to_lowercase()),
        }
    }

    /// The bytes every key of this store starts with, before the resource id.
    pub fn key_head(&self, app_id: &str, store: &str) -> Vec<u8> {
        let middle = match self {
            KeyPrefix::AppId if app_id.is_empty() => None,
            KeyPrefix::AppId => Some(app_id),
            KeyPrefix::Name => Some(store),
            KeyPrefix::None => None,
            KeyPrefix::Custom(prefix) => Some(prefix.as_str()),
        };
        let mut head = b"lock||".to_vec();
        if let Some(middle) = middle {
            head.extend_from_slice(middle.as_bytes());
            head.extend_from_slice(b"||");
        }
        head
    }
}

/// The `lock.redis` metadata dlockd acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redisHost`: `host:port`; with `failover`, the sentinels' addresses, comma-separated.
    pub host: String,
    /// `enableTLS`: connections to Redis use TLS, verified against the platform's roots
    /// (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set).
    pub tls: bool,
    /// `failover: true`: the master is asked of the sentinels at `host`.
    pub sentinel: Option<Sentinel>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `redisDB`.
    pub db: u32,
    pub key_prefix: KeyPrefix,
}

/// Redis Sentinel (`failover: true`): which master to ask the sentinels for, and how to log in
/// to them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentinel {
    /// `sentinelMasterName`.
    pub master: String,
    /// `sentinelUsername`.
    pub username: Option<String>,
    /// `sentinelPassword`.
    pub password: Option<String>,
}

/// The `lock.etcd` metadata.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EtcdSettings {
    /// `endpoints`: the cluster's members, `host:port` each, in the order given.
    pub endpoints: Vec<String>,
    /// `keyPrefix`, with the same strategies and default as `lock.redis`.
    pub key_prefix: KeyPrefix,
    /// `username` and `password`, given together: etcd's authentication.
    pub auth: Option<EtcdAuth>,
    /// `tlsCa`, `tlsCert`, `tlsKey`: connections use TLS when any is given.
    pub tls: Option<EtcdTls>,
    /// `dialTimeout` (default 5s): how long a connection attempt to a member may take.
    pub dial_timeout: Duration,
    /// `operationTimeout` (default 5s): the deadline of every call to etcd.
    pub operation_timeout: Duration,
}

/// etcd's user and password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EtcdAuth {
    pub username: String,
    pub password: String,
}

/// Never prints the password.
impl fmt::Debug for EtcdAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdAuth")
            .field("username", &self.username)
            .field("password", &"...")
            .finish()
    }
}

/// TLS to etcd: the CA that signs the members' certificates (else the platform's roots), and
/// a client certificate with its key (both or neither). Paths to PEM files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EtcdTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The default of `dialTimeout` and of `operationTimeout`.
pub const ETCD_DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What was found besides the stores: components passed over, with why.
pub type Notes = Vec<String>;

/// Where a file is wrong (a field path) and why.
pub type FieldError = (String, String);

/// The lock stores of one file, by name.
pub type FileStores = Vec<(String, Backend)>;

/// One `spec.metadata` entry and its position in the list.
struct Entry {
    name: String,
    value: String,
    at: usize,
}

/// A component file that cannot be used, naming the file and the field.
#[derive(Debug, PartialEq, Eq)]
pub struct ComponentError {
    pub file: PathBuf,
    /// Where in the file: a field path such as `spec.metadata[2].value`, or the YAML position.
    pub field: String,
    pub why: String,
}

impl fmt::Display for ComponentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.field, self.why)
    }
}

impl std::error::Error for ComponentError {}

/// Reads every component file in `dir`; `app_id` decides `scopes`.
pub fn load_dir(dir: &Path, app_id: &str) -> Result<(Vec<StoreComponent>, Notes), ComponentError> {
    let whole = |why: String| ComponentError {
        file: dir.to_path_buf(),
        field: "--resources-path".into(),
        why,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| whole(format!("cannot read it: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| whole(format!("cannot list it: {e}")))?
            .path();
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut stores: Vec<StoreComponent> = Vec::new();
    let mut notes = Vec::new();
    for file in files {
        let error = |field: &str, why: String| ComponentError {
            file: file.clone(),
            field: field.to_string(),
            why,
        };
        let size = std::fs::metadata(&file)
            .map_err(|e| error("file", format!("cannot read it: {e}")))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(error(
                "file",
                format!("{size} bytes; a component file may have at most {MAX_FILE_BYTES}"),
            ));
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|e| error("file", format!("cannot read it: {e}")))?;
        let (found, file_notes) =
            parse_file(&text, app_id).map_err(|(field, why)| error(&field, why))?;
        notes.extend(
            file_notes
                .into_iter()
                .map(|note| format!("{}: {note}", file.display())),
        );
        for (name, backend) in found {
            if let Some(earlier) = stores.iter().find(|s| s.name == name) {
                return Err(error(
                    "metadata.name",
                    format!(
                        "lock store {name:?} is also declared in {}",
                        earlier.file.display()
                    ),
                ));
            }
            stores.push(StoreComponent {
                name,
                backend,
                file: file.clone(),
            });
        }
    }
    Ok((stores, notes))
}

/// The lock stores of one file's text, and notes on what was passed over; or the field that
/// is wrong and why.
pub fn parse_file(text: &str, app_id: &str) -> Result<(FileStores, Notes), FieldError> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| ("YAML".to_string(), e.to_string()))?;
    let mut stores = Vec::new();
    let mut notes = Vec::new();
    for (at, doc) in docs.iter().enumerate() {
        // Field paths name the document when the file has several.
        let field = |path: &str| {
            if docs.len() > 1 {
                format!("document {}: {path}", at + 1)
            } else {
                path.to_string()
            }
        };
        if matches!(doc, Yaml::Null) {
            continue; // an empty document, e.g. after a trailing `---`
        }
        if !matches!(doc, Yaml::Hash(_)) {
            return Err((field("document"), "not a mapping".into()));
        }
        match &doc["kind"] {
            Yaml::String(kind) if kind == "Component" => {}
            Yaml::String(_) => continue, // another kind of Dapr resource
            Yaml::BadValue => return Err((field("kind"), "missing".into())),
            _ => return Err((field("kind"), "not a string".into())),
        }
        let api_version = text_of(&doc["apiVersion"]).ok_or_else(|| {
            (
                field("apiVersion"),
                "missing; expected dapr.io/v1alpha1".into(),
            )
        })?;
        if api_version != "dapr.io/v1alpha1" {
            return Err((
                field("apiVersion"),
                format!("{api_version:?}; expected dapr.io/v1alpha1"),
            ));
        }
        let name = text_of(&doc["metadata"]["name"])
            .filter(|n| !n.is_empty())
            .ok_or_else(|| (field("metadata.name"), "missing or empty".into()))?;
        let kind = text_of(&doc["spec"]["type"])
            .filter(|t| !t.is_empty())
            .ok_or_else(|| (field("spec.type"), "missing or empty".into()))?;
        if let Some(scopes) = scopes_of(&doc["scopes"]).map_err(|why| (field("scopes"), why))? {
            if !scopes.iter().any(|s| s == app_id) {
                notes.push(format!(
                    "component {name:?} is scoped to {scopes:?}, not to app id {app_id:?}: skipped"
                ));
                continue;
            }
        }
        let metadata = metadata_of(&doc["spec"]["metadata"])
            .map_err(|(path, why)| (field(&format!("spec.metadata{path}")), why))?;
        let backend = match kind.as_str() {
            "lock.in-memory" => Backend::InMemory,
            "lock.redis" => Backend::Redis(
                redis_settings(&metadata).map_err(|(path, why)| (field(&path), why))?,
            ),
            "lock.etcd" => {
                Backend::Etcd(etcd_settings(&metadata).map_err(|(path, why)| (field(&path), why))?)
            }
            other => {
                notes.push(format!(
                    "component {name:?} of type {other} is not a lock store dlockd serves: skipped"
                ));
                continue;
            }
        };
        stores.push((name, backend));
    }
    Ok((stores, notes))
}

/// A scalar as text: strings, and numbers and booleans as YAML wrote them.
fn text_of(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn scopes_of(y: &Yaml) -> Result<Option<Vec<String>>, String> {
    match y {
        Yaml::BadValue | Yaml::Null => Ok(None),
        Yaml::Array(items) => items
            .iter()
            .map(|i| text_of(i).ok_or_else(|| "an item is not a string".to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err("not a list of app ids".into()),
    }
}

/// `spec.metadata` as (name, value, index) triples; errors name `[index].field`.
fn metadata_of(y: &Yaml) -> Result<Vec<Entry>, FieldError> {
    let items = match y {
        Yaml::BadValue | Yaml::Null => return Ok(Vec::new()),
        Yaml::Array(items) => items,
        _ => return Err((String::new(), "not a list of name/value pairs".into())),
    };
    let mut out: Vec<Entry> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let name = text_of(&item["name"])
            .filter(|n| !n.is_empty())
            .ok_or_else(|| (format!("[{i}].name"), "missing or empty".into()))?;
        if !matches!(item["secretKeyRef"], Yaml::BadValue) {
            return Err((
                format!("[{i}].secretKeyRef"),
                format!("{name}: secret stores are not supported; give the value inline"),
            ));
        }
        let value = match &item["value"] {
            Yaml::BadValue | Yaml::Null => String::new(),
            other => text_of(other)
                .ok_or_else(|| (format!("[{i}].value"), format!("{name}: not a scalar")))?,
        };
        if let Some(earlier) = out.iter().find(|e| e.name == name) {
            return Err((
                format!("[{i}].name"),
                format!("{name} is also given at [{}]", earlier.at),
            ));
        }
        out.push(Entry { name, value, at: i });
    }
    Ok(out)
}

/// A component's `spec.metadata`, looked up by name.
struct Metadata<'a>(&'a [Entry]);

impl<'a> Metadata<'a> {
    /// The value of `key` and its position in the list.
    fn get(&self, key: &str) -> Option<(&'a str, usize)> {
        self.0
            .iter()
            .find(|e| e.name == key)
            .map(|e| (e.value.as_str(), e.at))
    }

    /// The position of `key`, or the first when it is absent: where an error points.
    fn at(&self, key: &str) -> usize {
        self.get(key).map_or(0, |(_, i)| i)
    }

    /// The value of `key` when it is given and not empty.
    fn nonempty(&self, key: &str) -> Option<String> {
        self.get(key)
            .map(|(v, _)| v.to_string())
            .filter(|v| !v.is_empty())
    }

    /// A boolean, false when absent.
    fn flag(&self, key: &str) -> Result<bool, FieldError> {
        match self.get(key) {
            None => Ok(false),
            Some((v, i)) => parse_bool(v)
                .ok_or_else(|| (value_path(i), format!("{key}: {v:?} is not a boolean"))),
        }
    }
}

/// The field path of the value at position `i` of `spec.metadata`.
fn value_path(i: usize) -> String {
    format!("spec.metadata[{i}].value")
}

/// The `lock.redis` settings of a component's metadata.
fn redis_settings(metadata: &[Entry]) -> Result<RedisSettings, FieldError> {
    let meta = Metadata(metadata);
    let host = redis_host(&meta)?;
    check_redis_type(&meta)?;
    let failover = meta.flag("failover")?;
    if host.contains(',') && !failover {
        return Err((
            value_path(meta.at("redisHost")),
            "redisHost names several hosts (a Redis Cluster): not supported for locks, as with \
             daprd"
                .into(),
        ));
    }
    let tls = meta.flag("enableTLS")?;
    let sentinel = if failover {
        Some(sentinel_of(&meta)?)
    } else {
        None
    };
    Ok(RedisSettings {
        host,
        tls,
        sentinel,
        username: meta.nonempty("redisUsername"),
        password: meta.nonempty("redisPassword"),
        db: redis_db(&meta)?,
        key_prefix: KeyPrefix::parse(meta.get("keyPrefix").map_or("", |(v, _)| v)),
    })
}

/// `redisHost`, which must be given and not empty.
fn redis_host(meta: &Metadata<'_>) -> Result<String, FieldError> {
    match meta.get("redisHost") {
        Some((h, _)) if !h.is_empty() => Ok(h.to_string()),
        Some((_, i)) => Err((value_path(i), "redisHost is empty".into())),
        None => Err(("spec.metadata".into(), "redisHost is missing".into())),
    }
}

/// `redisType`: a single node (the default); Redis Cluster is refused, as daprd refuses it.
fn check_redis_type(meta: &Metadata<'_>) -> Result<(), FieldError> {
    let Some((kind, i)) = meta.get("redisType") else {
        return Ok(());
    };
    if kind.eq_ignore_ascii_case("cluster") {
        return Err((
            value_path(i),
            "redisType cluster: Redis Cluster is not supported for locks, as with daprd \
             (a lock could be lost in a failover between shards)"
                .into(),
        ));
    }
    if !kind.is_empty() && !kind.eq_ignore_ascii_case("node") {
        return Err((value_path(i), format!("redisType {kind:?}: expected node")));
    }
    Ok(())
}

/// The sentinel settings of `failover: true`, which needs the master's name.
fn sentinel_of(meta: &Metadata<'_>) -> Result<Sentinel, FieldError> {
    let Some(master) = meta.nonempty("sentinelMasterName") else {
        return Err((
            value_path(meta.at("failover")),
            "failover: true needs sentinelMasterName, the name the sentinels monitor the \
             master by"
                .into(),
        ));
    };
    Ok(Sentinel {
        master,
        username: meta.nonempty("sentinelUsername"),
        password: meta.nonempty("sentinelPassword"),
    })
}

/// `redisDB`, 0 when absent or empty.
fn redis_db(meta: &Metadata<'_>) -> Result<u32, FieldError> {
    match meta.get("redisDB") {
        None | Some(("", _)) => Ok(0),
        Some((v, i)) => v.parse().map_err(|_| {
            (
                value_path(i),
                format!("redisDB: {v:?} is not a database number"),
            )
        }),
    }
}

/// The `lock.etcd` settings of a component's metadata.
fn etcd_settings(metadata: &[Entry]) -> Result<EtcdSettings, FieldError> {
    let meta = Metadata(metadata);
    let endpoints = match meta.get("endpoints") {
        None => return Err(("spec.metadata".into(), "endpoints is missing".into())),
        Some((list, i)) => etcd_endpoints(list).map_err(|why| (value_path(i), why))?,
    };
    let auth = match (meta.nonempty("username"), meta.nonempty("password")) {
        (None, None) => None,
        (Some(username), Some(password)) => Some(EtcdAuth { username, password }),
        (Some(_), None) => {
            return Err((
                value_path(meta.at("username")),
                "username is given without a password".into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                value_path(meta.at("password")),
                "password is given without a username".into(),
            ))
        }
    };
    let path = |key: &str| meta.nonempty(key).map(PathBuf::from);
    let tls = EtcdTls {
        ca: path("tlsCa"),
        cert: path("tlsCert"),
        key: path("tlsKey"),
    };
    match (&tls.cert, &tls.key) {
        (Some(_), None) => {
            return Err((
                value_path(meta.at("tlsCert")),
                "tlsCert is given without tlsKey, the client certificate's key".into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                value_path(meta.at("tlsKey")),
                "tlsKey is given without tlsCert, the client certificate".into(),
            ))
        }
        _ => {}
    }
    let tls = (tls != EtcdTls::default()).then_some(tls);
    Ok(EtcdSettings {
        endpoints,
        key_prefix: KeyPrefix::parse(meta.get("keyPrefix").map_or("", |(v, _)| v)),
        auth,
        tls,
        dial_timeout: timeout_of(&meta, "dialTimeout")?,
        operation_timeout: timeout_of(&meta, "operationTimeout")?,
    })
}

/// `endpoints`: `host:port`, comma-separated (spaces around each ignored), at least one.
fn etcd_endpoints(list: &str) -> Result<Vec<String>, String> {
    let mut endpoints: Vec<String> = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!("endpoints {list:?}: an empty endpoint"));
        }
        if item.contains("://") {
            return Err(format!(
                "endpoints: {item:?}: give host:port, without a scheme (TLS is set by tlsCa, \
                 tlsCert and tlsKey)"
            ));
        }
        let port_ok = item
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok || item.contains(char::is_whitespace) || item.contains('/') {
            return Err(format!(
                "endpoints: {item:?} is not host:port, e.g. 127.0.0.1:2379"
            ));
        }
        if !endpoints.iter().any(|e| e == item) {
            endpoints.push(item.to_string());
        }
    }
    Ok(endpoints)
}

/// A timeout of the metadata, [`ETCD_DEFAULT_TIMEOUT`] when absent or empty.
fn timeout_of(meta: &Metadata<'_>, key: &str) -> Result<Duration, FieldError> {
    match meta.get(key) {
        None | Some(("", _)) => Ok(ETCD_DEFAULT_TIMEOUT),
        Some((v, i)) => go_duration(v).map_err(|why| (value_path(i), format!("{key}: {why}"))),
    }
}

/// The most a timeout of a component may be.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// A duration as Go writes it (`5s`, `500ms`, `1m30s`, `1.5s`), more than zero and at most an
/// hour.
fn go_duration(text: &str) -> Result<Duration, String> {
    let shape = || format!("{text:?} is not a duration such as 5s or 500ms");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(shape());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(shape)?;
        let (number, tail) = rest.split_at(number_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, after) = tail.split_at(unit_end);
        let scale = match unit {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(shape()),
        };
        let value: f64 = number.parse().map_err(|_| shape())?;
        let part = Duration::try_from_secs_f64(value * scale).map_err(|_| shape())?;
        total = total.saturating_add(part);
        rest = after;
    }
    if total.is_zero() {
        return Err(format!("{text:?} must be more than zero"));
    }
    if total > MAX_TIMEOUT {
        return Err(format!("{text:?} is more than an hour"));
    }
    Ok(total)
}

/// Go's `strconv.ParseBool`, which daprd's metadata decoding uses.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIS: &str = "\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: redislock
spec:
  type: lock.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisPassword
    value: \"s3cret\"
  - name: redisDB
    value: 3
  - name: keyPrefix
    value: MyPrefix
";

    #[test]
    fn a_redis_component_is_read_as_daprd_reads_it() {
        // Protects wire compatibility with daprd's lock.redis: the host, credentials, database
        // and key prefix come from the same metadata names.
        let (stores, notes) = parse_file(REDIS, "app").expect("parses");
        assert!(notes.is_empty());
        assert_eq!(
            stores,
            vec![(
                "redislock".to_string(),
                Backend::Redis(RedisSettings {
                    host: "localhost:6379".into(),
                    tls: false,
                    sentinel: None,
                    username: None,
                    password: Some("s3cret".into()),
                    db: 3,
                    key_prefix: KeyPrefix::Custom("myprefix".into()),
                })
            )]
        );
    }

    #[test]
    fn sentinel_settings_are_read_as_daprd_reads_them() {
        // Protects failover: the sentinels' addresses, the master's name and the sentinels'
        // credentials; a failover without a master name is refused, naming the field.
        let text = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec:\n  \
type: lock.redis\n  metadata:\n  - {name: redisHost, value: \"a:26379,b:26379\"}\n  \
- {name: failover, value: \"true\"}\n  - {name: sentinelMasterName, value: mymaster}\n  \
- {name: sentinelPassword, value: pw}\n";
        let (stores, _) = parse_file(text, "app").expect("parses");
        let Backend::Redis(settings) = &stores[0].1 else {
            panic!("a redis store")
        };
        assert_eq!(settings.host, "a:26379,b:26379");
        assert_eq!(
            settings.sentinel,
            Some(Sentinel {
                master: "mymaster".into(),
                username: None,
                password: Some("pw".into()),
            })
        );
        let missing = text.replace("  - {name: sentinelMasterName, value: mymaster}\n", "");
        let (field, why) = parse_file(&missing, "app").expect_err("no master name");
        assert_eq!(field, "spec.metadata[1].value");
        assert!(why.contains("sentinelMasterName"), "{why}");
    }

    const ETCD: &str = "\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: etcdlock
spec:
  type: lock.etcd
  version: v1
  metadata:
  - name: endpoints
    value: \"10.0.0.1:2379, 10.0.0.2:2379,etcd-3.local:2379\"
";

    fn etcd_of(text: &str) -> EtcdSettings {
        let (stores, notes) = parse_file(text, "app").expect("parses");
        assert!(notes.is_empty(), "{notes:?}");
        match &stores[..] {
            [(name, Backend::Etcd(settings))] if name == "etcdlock" => settings.clone(),
            other => panic!("one etcd store: {other:?}"),
        }
    }

    #[test]
    fn an_etcd_component_has_endpoints_and_defaults() {
        // Protects the lock.etcd metadata: endpoints in order, the same keyPrefix default as
        // lock.redis, no credentials, no TLS, 5 s timeouts.
        let settings = etcd_of(ETCD);
        assert_eq!(
            settings,
            EtcdSettings {
                endpoints: vec![
                    "10.0.0.1:2379".into(),
                    "10.0.0.2:2379".into(),
                    "etcd-3.local:2379".into()
                ],
                key_prefix: KeyPrefix::AppId,
                auth: None,
                tls: None,
                dial_timeout: Duration::from_secs(5),
                operation_timeout: Duration::from_secs(5),
            }
        );
        assert_eq!(Backend::Etcd(settings).type_name(), "lock.etcd");
    }

    #[test]
    fn etcd_metadata_is_read_whole() {
        // Every field dlockd acts on: key prefix strategies as lock.redis's, credentials,
        // the TLS files, and Go durations.
        let with = |pairs: &[(&str, &str)]| {
            let mut text = ETCD.to_string();
            for (k, v) in pairs {
                text.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
            }
            text
        };
        for (prefix, want) in [
            ("appid", KeyPrefix::AppId),
            ("name", KeyPrefix::Name),
            ("none", KeyPrefix::None),
            ("Orders", KeyPrefix::Custom("orders".into())),
        ] {
            assert_eq!(etcd_of(&with(&[("keyPrefix", prefix)])).key_prefix, want);
        }
        let settings = etcd_of(&with(&[
            ("username", "root"),
            ("password", "pw"),
            ("tlsCa", "/etc/etcd/ca.pem"),
            ("tlsCert", "/etc/etcd/client.pem"),
            ("tlsKey", "/etc/etcd/client-key.pem"),
            ("dialTimeout", "500ms"),
            ("operationTimeout", "1m30s"),
        ]));
        assert_eq!(
            settings.auth,
            Some(EtcdAuth {
                username: "root".into(),
                password: "pw".into()
            })
        );
        assert!(
            !format!("{:?}", settings.auth).contains("pw"),
            "no password in Debug"
        );
        assert_eq!(
            settings.tls,
            Some(EtcdTls {
                ca: Some("/etc/etcd/ca.pem".into()),
                cert: Some("/etc/etcd/client.pem".into()),
                key: Some("/etc/etcd/client-key.pem".into()),
            })
        );
        assert_eq!(settings.dial_timeout, Duration::from_millis(500));
        assert_eq!(settings.operation_timeout, Duration::from_secs(90));
        let ca_only = etcd_of(&with(&[("tlsCa", "ca.pem"), ("operationTimeout", "1.5s")]));
        assert_eq!(
            ca_only.tls,
            Some(EtcdTls {
                ca: Some("ca.pem".into()),
                ..EtcdTls::default()
            })
        );
        assert_eq!(ca_only.operation_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn broken_etcd_components_name_the_field() {
        // A lock.etcd store half understood stops the start, naming where it is wrong.
        let head = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\nspec:\n  \
                    type: lock.etcd\n  metadata:\n";
        let cases: &[(&str, &str, &str)] = &[
            ("", "spec.metadata", "endpoints is missing"),
            (
                "  - {name: endpoints, value: \"\"}\n",
                "spec.metadata[0].value",
                "an empty endpoint",
            ),
            (
                "  - {name: endpoints, value: \"a:1,,b:2\"}\n",
                "spec.metadata[0].value",
                "an empty endpoint",
            ),
            (
                "  - {name: endpoints, value: \"http://a:2379\"}\n",
                "spec.metadata[0].value",
                "without a scheme",
            ),
            (
                "  - {name: endpoints, value: a}\n",
                "spec.metadata[0].value",
                "is not host:port",
            ),
            (
                "  - {name: endpoints, value: \"a:99999\"}\n",
                "spec.metadata[0].value",
                "is not host:port",
            ),
            (
                "  - {name: endpoints, value: \":2379\"}\n",
                "spec.metadata[0].value",
                "is not host:port",
            ),
            (
                "  - {name: endpoints, value: \"a:1\"}\n  - {name: username, value: u}\n",
                "spec.metadata[1].value",
                "without a password",
            ),
            (
                "  - {name: endpoints, value: \"a:1\"}\n  - {name: password, value: p}\n",
                "spec.metadata[1].value",
                "without a username",
            ),
            (
                "  - {name: endpoints, value: \"a:1\"}\n  - {name: tlsCert, value: c.pem}\n",
                "spec.metadata[1].value",
                "without tlsKey",
            ),
            (
                "  - {name: endpoints, value: \"a:1\"}\n  - {name: tlsKey, value: k.pem}\n",
                "spec.metadata[1].value",
                "without tlsCert",
            ),
            (
                "  - {name: endpoints, value: \"a:1\"}\n  - {name: dialTimeout, value: five}\n",
                "spec.metadata[1].value",
                "dialTimeout: \"five\" is not a duration",
            ),
            (
                "  - {name: endpoints, value: \"a:1\"}\n  - {name: operationTimeout, value: 5}\n",
                "spec.metadata[1].value",
                "operationTimeout: \"5\" is not a duration",
            ),
            (
                "  - {name: endpoints, value: \"a:1\"}\n  - {name: operationTimeout, value: 0s}\n",
                "spec.metadata[1].value",
                "more than zero",
            ),
            (
                "  - {name: endpoints, value: \"a:1\"}\n  - {name: operationTimeout, value: 2h}\n",
                "spec.metadata[1].value",
                "more than an hour",
            ),
            (
                "  - {name: endpoints, value: \"a:1\"}\n  - {name: dialTimeout, value: 5us}\n",
                "spec.metadata[1].value",
                "not a duration",
            ),
        ];
        for (metadata, field, why) in cases {
            let text = format!("{head}{metadata}");
            let (got_field, got_why) = parse_file(&text, "app").expect_err(&text);
            assert_eq!(got_field, *field, "{text}");
            assert!(got_why.contains(why), "{text}: {got_why}");
        }
    }

    #[test]
    fn key_heads_follow_the_contract_table() {
        // Protects interoperability: the same keys daprd writes for each keyPrefix strategy.
        let head = |p: &str, app: &str| {
            String::from_utf8(KeyPrefix::parse(p).key_head(app, "store")).expect("utf-8")
        };
        assert_eq!(head("", "app"), "lock||app||");
        assert_eq!(head("appid", ""), "lock||");
        assert_eq!(head("name", "app"), "lock||store||");
        assert_eq!(head("none", "app"), "lock||");
        assert_eq!(head("MyPrefix", "app"), "lock||myprefix||");
    }

    #[test]
    fn other_resources_and_types_are_passed_over() {
        // A resources directory holds more than lock stores: other kinds pass silently, other
        // component types and components scoped to other apps with a note.
        let text = "\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: config
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: state
spec:
  type: state.redis
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: mem
spec:
  type: lock.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: elsewhere
spec:
  type: lock.in-memory
scopes:
- other-app
---
";
        let (stores, notes) = parse_file(text, "app").expect("parses");
        assert_eq!(stores, vec![("mem".to_string(), Backend::InMemory)]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("state.redis"), "{notes:?}");
        assert!(notes[1].contains("scoped"), "{notes:?}");
    }

    #[test]
    fn broken_components_name_the_field() {
        // A component that cannot be understood stops the start, naming where it is wrong.
        let cases: &[(&str, &str, &str)] = &[
            ("kind: Component\nmetadata: {name: x}\nspec: {type: lock.redis}", "apiVersion", "missing"),
            (
                "apiVersion: dapr.io/v2\nkind: Component\nmetadata: {name: x}\nspec: {type: lock.redis}",
                "apiVersion",
                "expected dapr.io/v1alpha1",
            ),
            ("apiVersion: dapr.io/v1alpha1\nkind: Component\nspec: {type: lock.redis}", "metadata.name", "missing"),
            ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}", "spec.type", "missing"),
            (
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\nspec: {type: lock.redis}",
                "spec.metadata",
                "redisHost is missing",
            ),
            (
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\nspec:\n  type: lock.redis\n  metadata:\n  - name: redisHost\n    value: h:1\n  - name: redisDB\n    value: two",
                "spec.metadata[1].value",
                "not a database number",
            ),
            (
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\nspec:\n  type: lock.redis\n  metadata:\n  - value: h:1",
                "spec.metadata[0].name",
                "missing",
            ),
            (
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\nspec:\n  type: lock.redis\n  metadata:\n  - name: redisHost\n    value: h:1\n  - name: redisType\n    value: cluster",
                "spec.metadata[1].value",
                "Redis Cluster is not supported",
            ),
            (
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\nspec:\n  type: lock.redis\n  metadata:\n  - name: redisPassword\n    secretKeyRef: {name: s, key: k}",
                "spec.metadata[0].secretKeyRef",
                "secret stores are not supported",
            ),
            ("apiVersion: [unclosed", "YAML", "line"),
        ];
        for (text, field, why) in cases {
            let (got_field, got_why) = parse_file(text, "app").expect_err(text);
            assert_eq!(got_field, *field, "{text}");
            assert!(got_why.contains(why), "{text}: {got_why}");
        }
    }

    #[test]
    fn a_directory_is_read_in_name_order_and_names_are_unique() {
        // Protects the start-up errors that name a file: a store declared twice names both.
        let dir = std::env::temp_dir().join(format!("dlockd-components-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("b.yaml"), REDIS).expect("write");
        std::fs::write(dir.join("a.yml"), REDIS.replace("redislock", "first")).expect("write");
        std::fs::write(dir.join("notes.txt"), "not yaml: [").expect("write");
        let (stores, _) = load_dir(&dir, "app").expect("loads");
        let names: Vec<_> = stores.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["first", "redislock"]);
        std::fs::write(dir.join("c.yaml"), REDIS).expect("write");
        let err = load_dir(&dir, "app").expect_err("duplicate");
        assert!(err.file.ends_with("c.yaml"), "{err}");
        assert_eq!(err.field, "metadata.name");
        assert!(err.why.contains("b.yaml"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
