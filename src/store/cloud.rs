//! Cloud URLs (`s3://`, `gs://`, `http(s)://`) → configured `object_store` clients.
//!
//! Configuration comes the way users already have it (AWS_* and GOOGLE_* environment
//! variables, a service-account JSON), and `storage_options` override any of it. object_store
//! silently drops keys it does not know, so every key is validated here first: a typo must be
//! an error, not a setting that quietly does nothing. Values never appear in messages, because
//! some of them are secrets.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, AwsCredential, AwsCredentialProvider};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, ClientOptions, HeaderMap, HeaderValue, ObjectStore,
    RetryConfig, StaticCredentialProvider,
};

use super::aws_process::ProcessProvider;
use super::aws_profile::{self, Source};
use super::aws_sts::{self, Grant, StsProvider};
use super::cloud_host;
use super::gcp_user::{self, AuthorizedUserProvider};
use crate::error::{Error, Result};

/// Options of our own, understood for every cloud scheme (the rest go to object_store).
const OWN_KEYS: [&str; 5] = [
    "retries",
    "timeout",
    "connect_timeout",
    "deadline",
    "anonymous",
];

/// Retries after a 5xx, a timeout or a dropped connection, with exponential backoff.
const DEFAULT_RETRIES: usize = 5;
/// One request (connect + transfer) may take this long before it is retried.
const DEFAULT_TIMEOUT_S: f64 = 30.0;
/// Connecting may take this long (or `timeout`, when that is shorter).
const DEFAULT_CONNECT_TIMEOUT_S: f64 = 5.0;
/// One operation, retries included, gives up after this long: a dead server is an error,
/// never a hang.
const DEFAULT_DEADLINE_S: f64 = 120.0;

/// Which cloud a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `s3://` (Amazon S3 and S3-compatible stores).
    S3,
    /// `gs://` (Google Cloud Storage).
    Gcs,
    /// `http://` or `https://`.
    Http,
}

impl Scheme {
    /// The cloud scheme of `url`, or `None` for local and memory URLs.
    pub fn of(url: &str) -> Option<Scheme> {
        let (scheme, _) = url.split_once("://")?;
        match scheme.to_ascii_lowercase().as_str() {
            "s3" | "s3a" => Some(Scheme::S3),
            "gs" | "gcs" => Some(Scheme::Gcs),
            "http" | "https" => Some(Scheme::Http),
            _ => None,
        }
    }

    /// Whether `key` is a configuration key this scheme understands.
    fn knows(self, key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        OWN_KEYS.contains(&key.as_str())
            || match self {
                Scheme::S3 => AmazonS3ConfigKey::from_str(&key).is_ok(),
                Scheme::Gcs => GoogleConfigKey::from_str(&key).is_ok(),
                Scheme::Http => ClientConfigKey::from_str(&key).is_ok(),
            }
    }
}

/// A connected cloud store, rooted where the layer is.
pub struct Cloud {
    pub store: Arc<dyn ObjectStore>,
    /// The layer's path inside the store (empty for HTTP, whose base URL is the layer).
    pub prefix: Path,
    /// The layer URL for messages: no credentials, no trailing slash.
    pub url: String,
    /// Each operation, retries included, ends by then.
    pub deadline: Duration,
    /// Retries after a failure object_store does not retry itself (see `object.rs`).
    pub retries: usize,
    /// HTTP servers are read-only.
    pub read_only: bool,
    /// Whether conditional puts may be asked for: not from S3 configured
    /// `conditional_put: disabled` (look-alikes without If-Match).
    pub conditional_puts: bool,
    /// S3 with no credentials but the instance-metadata service: its endpoint, and the
    /// message that explains a failure to get credentials there.
    pub missing_credentials: Option<(String, String)>,
    /// No credentials were found anywhere, so requests go unsigned: what a refusal should
    /// add (where credentials were looked for).
    pub unsigned: Option<String>,
}

/// The retry/timeout settings parsed from the options.
struct Limits {
    retries: usize,
    timeout: Duration,
    /// `None`: the default, capped by `timeout`.
    connect_timeout: Option<Duration>,
    deadline: Duration,
    anonymous: bool,
    /// S3 only: the shared-config profile to read (else `AWS_PROFILE`, else `default`).
    profile: Option<String>,
    /// GCS only: the project billed for requests (`x-goog-user-project`), for
    /// requester-pays buckets.
    user_project: Option<String>,
    /// Requester pays: S3 sends `x-amz-request-payer`; GCS bills `user_project`, else
    /// `GOOGLE_CLOUD_PROJECT`, else the credentials file's quota project.
    requester_pays: bool,
}

fn seconds(key: &str, value: &str) -> Result<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Error::invalid(format!(
                "storage_options[{key:?}] must be a positive number of seconds"
            ))
        })
}

fn flag(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(Error::invalid(format!(
            "storage_options[{key:?}] must be true or false"
        ))),
    }
}

/// Splits the options into our own limits and object_store's keys, validating every key.
fn split(scheme: Scheme, options: &[(String, String)]) -> Result<(Limits, Vec<(String, String)>)> {
    let mut limits = Limits {
        retries: DEFAULT_RETRIES,
        timeout: Duration::from_secs_f64(DEFAULT_TIMEOUT_S),
        connect_timeout: None,
        deadline: Duration::from_secs_f64(DEFAULT_DEADLINE_S),
        anonymous: false,
        profile: None,
        user_project: None,
        requester_pays: false,
    };
    let mut rest = Vec::new();
    for (key, value) in options {
        let lower = key.to_ascii_lowercase();
        if scheme == Scheme::S3 && (lower == "profile" || lower == "aws_profile") {
            limits.profile = Some(value.clone());
            continue;
        }
        if scheme == Scheme::Gcs && lower == "user_project" {
            limits.user_project = Some(value.trim().to_string()).filter(|p| !p.is_empty());
            continue;
        }
        if scheme != Scheme::Http && lower == "requester_pays" {
            limits.requester_pays = flag(key, value)?;
            continue;
        }
        if !scheme.knows(&lower) {
            return Err(Error::invalid(format!(
                "storage_options: unknown key {key:?} for {scheme:?} stores (known: concurrency, \
                 retries, timeout, connect_timeout, deadline, anonymous, requester_pays, \
                 profile (S3), user_project (GCS), and object_store's configuration keys)"
            )));
        }
        match lower.as_str() {
            "retries" => {
                limits.retries = value.trim().parse().map_err(|_| {
                    Error::invalid("storage_options[\"retries\"] must be a non-negative integer")
                })?
            }
            "timeout" => limits.timeout = seconds(key, value)?,
            // Ours rather than object_store's, so that `timeout` cannot overwrite it.
            "connect_timeout" => limits.connect_timeout = Some(seconds(key, value)?),
            "deadline" => limits.deadline = seconds(key, value)?,
            "anonymous" => limits.anonymous = flag(key, value)?,
            _ => rest.push((lower, value.clone())),
        }
    }
    Ok((limits, rest))
}

impl Limits {
    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: self.retries,
            retry_timeout: self.deadline,
        }
    }

    fn connect(&self) -> Duration {
        self.connect_timeout.unwrap_or_else(|| {
            self.timeout
                .min(Duration::from_secs_f64(DEFAULT_CONNECT_TIMEOUT_S))
        })
    }

    /// The client options our own credential requests (STS, token refresh) go out with.
    fn client_options(&self) -> ClientOptions {
        let mut options = ClientOptions::new();
        for (key, value) in self.client_config() {
            options = options.with_config(key, value);
        }
        options
    }

    /// Client timeouts as object_store config strings (humantime has no fractions).
    fn client_config(&self) -> [(ClientConfigKey, String); 2] {
        let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
        [
            (ClientConfigKey::Timeout, ms(self.timeout)),
            (ClientConfigKey::ConnectTimeout, ms(self.connect())),
        ]
    }
}

/// `scheme://bucket/path` → (bucket, path), with a clear error for a URL with no bucket.
fn bucket_and_path(url: &str) -> Result<(&str, &str)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::invalid(format!("{url}: no bucket in the URL")));
    }
    Ok((bucket, path.trim_matches('/')))
}

/// `text` with the `user:password@` of every URL in it removed: object_store's messages
/// quote request URLs, and a URL may carry credentials.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        out.push_str(
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host),
        );
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `url` without `user:password@`, for messages.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let joined = if path.is_empty() {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            };
            joined.trim_end_matches('/').to_string()
        }
        None => url.to_string(),
    }
}

fn build_error(url: &str, e: object_store::Error) -> Error {
    let reason = scrub(&e.to_string());
    Error::invalid(format!("{url}: cannot configure the store: {reason}"))
}

/// Connects to the cloud store `url` names, configured from the environment and `options`.
pub fn connect(url: &str, scheme: Scheme, options: &[(String, String)]) -> Result<Cloud> {
    let (limits, rest) = split(scheme, options)?;
    let shown = redact(url);
    let mut missing = None;
    let mut unsigned = None;
    let mut conditional_puts = true;
    let (store, prefix, read_only): (Arc<dyn ObjectStore>, Path, bool) = match scheme {
        Scheme::S3 => {
            let (bucket, path) = bucket_and_path(url)?;
            // Precedence as in the AWS CLI: storage_options, then AWS_* variables, then the
            // shared profile files.
            let mut b = AmazonS3Builder::new();
            let profile = aws_profile::settings(limits.profile.as_deref())?;
            for (key, value) in profile.settings {
                let key = AmazonS3ConfigKey::from_str(key).map_err(|e| build_error(&shown, e))?;
                b = b.with_config(key, value);
            }
            // vars_os: a non-UTF-8 variable elsewhere in the environment must not panic.
            for (key, value) in std::env::vars_os() {
                let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
                    continue;
                };
                if key.starts_with("AWS_") {
                    if let Ok(key) = AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()) {
                        b = b.with_config(key, value);
                    }
                }
            }
            for (key, value) in &rest {
                let key = AmazonS3ConfigKey::from_str(key).map_err(|e| build_error(&shown, e))?;
                b = b.with_config(key, value);
            }
            // A plain-http endpoint (AWS_ENDPOINT_URL=http://..., an emulator, MinIO) is
            // what the user asked for: allow it rather than fail on "scheme not allowed".
            let endpoint = b.get_config_value(&AmazonS3ConfigKey::Endpoint);
            if endpoint.is_some_and(|e| e.starts_with("http://"))
                && !rest.iter().any(|(k, _)| k.ends_with("allow_http"))
            {
                b = b.with_allow_http(true);
            }
            for (key, value) in limits.client_config() {
                b = b.with_config(AmazonS3ConfigKey::Client(key), value);
            }
            if limits.requester_pays {
                b = b.with_config(AmazonS3ConfigKey::RequestPayer, "true");
            }
            if limits.anonymous {
                b = b.with_skip_signature(true);
            } else if let Some(provider) = aws_provider(&b, profile.source, &limits, &shown)? {
                b = b.with_credentials(provider);
            } else if !has_credentials(&b) {
                let message = missing_credentials(&b, limits.profile.as_deref());
                if asks_instance_metadata(&b) {
                    // On EC2 an instance role may answer; if it does not, errors say this.
                    let endpoint = b
                        .get_config_value(&AmazonS3ConfigKey::MetadataEndpoint)
                        .unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.to_string());
                    missing = Some((endpoint, message));
                } else {
                    // Off EC2 no metadata service can answer, and waiting for it to time
                    // out would stall every public-bucket read: go unsigned at once, as
                    // `anonymous` would, and say where we looked if the bucket refuses.
                    b = b.with_skip_signature(true);
                    unsigned = Some(message);
                }
            }
            conditional_puts = b
                .get_config_value(&AmazonS3ConfigKey::ConditionalPut)
                .is_none_or(|v| v.trim() != "disabled");
            // Last, so that no AWS_BUCKET variable or option can point elsewhere.
            let s = b
                .with_bucket_name(bucket)
                .with_retry(limits.retry())
                .build()
                .map_err(|e| build_error(&shown, e))?;
            (Arc::new(s), Path::from(path), false)
        }
        Scheme::Gcs => {
            let (bucket, path) = bucket_and_path(url)?;
            let mut b = GoogleCloudStorageBuilder::from_env();
            for (key, value) in &rest {
                let key = GoogleConfigKey::from_str(key).map_err(|e| build_error(&shown, e))?;
                b = b.with_config(key, value);
            }
            let credentials = if limits.anonymous {
                GcsCredentials::Anonymous
            } else {
                gcs_credentials(&b)
                    .map_err(|reason| Error::invalid(format!("{shown}: {reason}")))?
            };
            if let Some(project) = billed_project(&limits, &credentials)
                .map_err(|reason| Error::invalid(format!("{shown}: {reason}")))?
            {
                // Every request names the billed project: the XML API's form of
                // `userProject`. Set before the client keys below, which this would reset.
                let value = HeaderValue::from_str(&project).map_err(|_| {
                    Error::invalid(format!(
                        "{shown}: user_project {project:?} is not a project id"
                    ))
                })?;
                let mut headers = HeaderMap::new();
                headers.insert("x-goog-user-project", value);
                b = b.with_client_options(ClientOptions::new().with_default_headers(headers));
                for (key, value) in &rest {
                    if let Ok(GoogleConfigKey::Client(key)) = GoogleConfigKey::from_str(key) {
                        b = b.with_config(GoogleConfigKey::Client(key), value);
                    }
                }
            }
            let base = b.get_config_value(&GoogleConfigKey::BaseUrl);
            if base.is_some_and(|e| e.starts_with("http://"))
                && !rest.iter().any(|(k, _)| k.ends_with("allow_http"))
            {
                b = b.with_config(GoogleConfigKey::Client(ClientConfigKey::AllowHttp), "true");
            }
            for (key, value) in limits.client_config() {
                b = b.with_config(GoogleConfigKey::Client(key), value);
            }
            match credentials {
                GcsCredentials::Anonymous => {
                    // Reads only: object_store 0.14 still asks the credential provider on
                    // writes.
                    b = b.with_skip_signature(true);
                }
                GcsCredentials::Unsigned(message) => {
                    b = b.with_skip_signature(true);
                    unsigned = Some(message);
                }
                GcsCredentials::AuthorizedUser(path, _) => {
                    let provider =
                        AuthorizedUserProvider::from_file(&path, &limits.client_options())
                            .map_err(|reason| Error::invalid(format!("{shown}: {reason}")))?;
                    b = b.with_credentials(Arc::new(provider));
                }
                GcsCredentials::File(path, _) => {
                    b = b.with_config(GoogleConfigKey::ApplicationCredentials, path);
                }
                GcsCredentials::ObjectStore => {}
            }
            let s = b
                .with_bucket_name(bucket)
                .with_retry(limits.retry())
                .build()
                .map_err(|e| build_error(&shown, e))?;
            (Arc::new(s), Path::from(path), false)
        }
        Scheme::Http => {
            let mut client = ClientOptions::new().with_allow_http(true);
            for (key, value) in &rest {
                let key = ClientConfigKey::from_str(key).map_err(|e| build_error(&shown, e))?;
                client = client.with_config(key, value);
            }
            for (key, value) in limits.client_config() {
                client = client.with_config(key, value);
            }
            let s = HttpBuilder::new()
                .with_url(url.trim_end_matches('/'))
                .with_client_options(client)
                .with_retry(limits.retry())
                .build()
                .map_err(|e| build_error(&shown, e))?;
            (Arc::new(s), Path::default(), true)
        }
    };
    Ok(Cloud {
        store,
        prefix,
        url: shown,
        // object_store stops retrying at the deadline, but a request already in flight may
        // run up to one more timeout: allow for it before we cut the operation off.
        deadline: limits.deadline + limits.timeout,
        retries: limits.retries,
        read_only,
        conditional_puts,
        missing_credentials: missing,
        unsigned,
    })
}

/// Where object_store asks for an EC2 instance role's credentials when it has no others.
const DEFAULT_METADATA_ENDPOINT: &str = "http://169.254.169.254";

/// The credential provider for what object_store cannot fetch itself, in the AWS CLI's
/// order after static keys: the profile's role or process, then web identity from the
/// environment or options. `None`: static keys or nothing of the kind.
fn aws_provider(
    b: &AmazonS3Builder,
    profile: Result<Option<Source>>,
    limits: &Limits,
    shown: &str,
) -> Result<Option<AwsCredentialProvider>> {
    use AmazonS3ConfigKey as K;
    let value = |key: K| b.get_config_value(&key).filter(|v| !v.is_empty());
    if value(K::AccessKeyId).is_some() {
        return Ok(None);
    }
    // The profile's role is an error only here, where nothing with precedence gave keys.
    let source = match profile? {
        Some(source) => source,
        None => match (value(K::WebIdentityTokenFile), value(K::RoleArn)) {
            (Some(token_file), Some(role_arn)) => Source::WebIdentity {
                role_arn,
                token_file,
                session_name: value(K::RoleSessionName),
            },
            _ => return Ok(None),
        },
    };
    let region = value(K::Region).unwrap_or_else(|| "us-east-1".to_string());
    let endpoint = aws_sts::endpoint(value(K::StsEndpoint), &region);
    let provider = provider_for(source, &endpoint, &region, &limits.client_options())
        .map_err(|e| build_error(shown, e))?;
    Ok(Some(provider))
}

/// The provider for one credential source (roles recursively: a role's source is signed
/// for by its own provider).
fn provider_for(
    source: Source,
    endpoint: &str,
    region: &str,
    options: &ClientOptions,
) -> object_store::Result<AwsCredentialProvider> {
    Ok(match source {
        Source::Keys {
            key_id,
            secret,
            token,
        } => Arc::new(StaticCredentialProvider::new(AwsCredential {
            key_id,
            secret_key: secret,
            token,
        })),
        Source::Process { command, profile } => Arc::new(ProcessProvider::new(&command, &profile)),
        Source::Role {
            role_arn,
            session_name,
            external_id,
            source,
        } => {
            let source = provider_for(*source, endpoint, region, options)?;
            let grant = Grant::AssumeRole {
                source,
                external_id,
            };
            Arc::new(StsProvider::new(
                endpoint.to_string(),
                region.to_string(),
                role_arn,
                session_name,
                grant,
                options,
            )?)
        }
        Source::WebIdentity {
            role_arn,
            token_file,
            session_name,
        } => Arc::new(StsProvider::new(
            endpoint.to_string(),
            region.to_string(),
            role_arn,
            session_name,
            Grant::WebIdentity { token_file },
            options,
        )?),
    })
}

/// How a GCS store authenticates.
enum GcsCredentials {
    /// `anonymous`: unsigned, as asked.
    Anonymous,
    /// Nothing found anywhere and not on Google Cloud: unsigned, with the message for a
    /// refusal.
    Unsigned(String),
    /// An authorized-user ADC file (path, quota project): refreshed by us.
    AuthorizedUser(String, Option<String>),
    /// Another ADC file (a service account): object_store reads it.
    File(String, Option<String>),
    /// Configured in object_store's own keys, or the metadata server on Google Cloud.
    ObjectStore,
}

/// Where this GCS store's credentials come from: keys given to object_store, else the
/// ADC file (`GOOGLE_APPLICATION_CREDENTIALS`, `application_credentials`, then gcloud's
/// well-known file, `CLOUDSDK_CONFIG` honoured), else the metadata server on Google Cloud,
/// else none (unsigned).
fn gcs_credentials(b: &GoogleCloudStorageBuilder) -> std::result::Result<GcsCredentials, String> {
    use GoogleConfigKey as K;
    let set = |key: K| b.get_config_value(&key).is_some_and(|v| !v.is_empty());
    if set(K::ServiceAccount) || set(K::ServiceAccountKey) || set(K::BearerToken) {
        return Ok(GcsCredentials::ObjectStore);
    }
    let file = b
        .get_config_value(&K::ApplicationCredentials)
        .filter(|v| !v.is_empty())
        .or_else(|| gcp_user::well_known_file().map(|p| p.display().to_string()));
    if let Some(path) = file {
        let adc = gcp_user::read_kind(&path)?;
        return Ok(if adc.kind == "authorized_user" {
            GcsCredentials::AuthorizedUser(path, adc.quota_project_id)
        } else {
            GcsCredentials::File(path, adc.quota_project_id)
        });
    }
    if cloud_host::on_gcp() {
        return Ok(GcsCredentials::ObjectStore);
    }
    Ok(GcsCredentials::Unsigned(
        "no Google credentials found: looked in storage_options (service_account, \
         service_account_key, application_credentials), the environment \
         (GOOGLE_SERVICE_ACCOUNT, GOOGLE_APPLICATION_CREDENTIALS), gcloud's \
         application_default_credentials.json (in CLOUDSDK_CONFIG or ~/.config/gcloud), \
         not the metadata server (not on Google Cloud); requests were sent unsigned, as \
         with storage_options={\"anonymous\": True}"
            .to_string(),
    ))
}

/// The project a GCS store bills: `user_project`, or for `requester_pays`
/// `GOOGLE_CLOUD_PROJECT`, else the credentials file's quota project.
fn billed_project(
    limits: &Limits,
    credentials: &GcsCredentials,
) -> std::result::Result<Option<String>, String> {
    if limits.user_project.is_some() || !limits.requester_pays {
        return Ok(limits.user_project.clone());
    }
    let quota = match credentials {
        GcsCredentials::AuthorizedUser(_, q) | GcsCredentials::File(_, q) => q.clone(),
        _ => None,
    };
    std::env::var("GOOGLE_CLOUD_PROJECT")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .or(quota)
        .map(Some)
        .ok_or_else(|| {
            "requester_pays needs a project to bill: storage_options user_project, \
             GOOGLE_CLOUD_PROJECT, or quota_project_id in the credentials file"
                .to_string()
        })
}

/// Whether the S3 builder has a credential source other than the instance-metadata
/// service: keys (from options, environment or profile), a container endpoint, or none
/// needed (anonymous). Roles, processes and web identity are [`aws_provider`]'s.
fn has_credentials(b: &AmazonS3Builder) -> bool {
    use AmazonS3ConfigKey as K;
    let set = |key: K| b.get_config_value(&key).is_some_and(|v| !v.is_empty());
    set(K::AccessKeyId)
        || set(K::ContainerCredentialsRelativeUri)
        || set(K::ContainerCredentialsFullUri)
        || b.get_config_value(&K::SkipSignature)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Whether, lacking other credentials, asking the instance-metadata service can help: only
/// for AWS itself (no endpoint, or an amazonaws.com one) on an EC2 instance (told from
/// local files, see `cloud_host`), and not where the AWS SDKs' own switch
/// (`AWS_EC2_METADATA_DISABLED`) turns it off. A custom metadata endpoint counts as asked
/// for.
fn asks_instance_metadata(b: &AmazonS3Builder) -> bool {
    let disabled = std::env::var("AWS_EC2_METADATA_DISABLED")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let custom_metadata = b
        .get_config_value(&AmazonS3ConfigKey::MetadataEndpoint)
        .is_some();
    let on_aws = b
        .get_config_value(&AmazonS3ConfigKey::Endpoint)
        .is_none_or(|e| {
            let host = e.split("://").nth(1).unwrap_or(&e).split(['/', ':']).next();
            host.is_some_and(|h| h.ends_with(".amazonaws.com") || h.ends_with(".amazonaws.com.cn"))
        });
    !disabled && (custom_metadata || (on_aws && cloud_host::on_aws()))
}

/// The message for a store with no credentials: where they were looked for, and what reads
/// public buckets.
fn missing_credentials(b: &AmazonS3Builder, profile: Option<&str>) -> String {
    let (metadata, then) = if asks_instance_metadata(b) {
        (
            "and the EC2 instance metadata service",
            "storage_options={\"anonymous\": True} reads public buckets",
        )
    } else {
        (
            "not the EC2 instance metadata service (not on EC2, or the endpoint is not AWS)",
            "requests were sent unsigned, as with storage_options={\"anonymous\": True}",
        )
    };
    format!(
        "no AWS credentials found: looked in storage_options (aws_access_key_id, \
         aws_secret_access_key), the environment (AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, \
         AWS_CONTAINER_CREDENTIALS_RELATIVE_URI), {} (keys, role_arn, credential_process), \
         {metadata}; {then}",
        aws_profile::searched(profile)
    )
}

/// Rejects cloud-only options for stores that have no use for them.
pub fn reject_for_local(url: &str, options: &[(String, String)]) -> Result<()> {
    match options.first() {
        Some((key, _)) => Err(Error::invalid(format!(
            "storage_options: key {key:?} does not apply to {url} (only \"concurrency\" does)"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn schemes() {
        assert_eq!(Scheme::of("s3://b/p"), Some(Scheme::S3));
        assert_eq!(Scheme::of("gs://b/p"), Some(Scheme::Gcs));
        assert_eq!(Scheme::of("HTTPS://h/p"), Some(Scheme::Http));
        assert_eq!(Scheme::of("/data"), None);
        assert_eq!(Scheme::of("memory://x"), None);
    }

    #[test]
    fn unknown_keys_are_named_and_values_never_shown() {
        let err = split(Scheme::S3, &opts(&[("aws_secret_acces_key", "hunter2")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("aws_secret_acces_key"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = split(Scheme::Gcs, &opts(&[("timeout", "soon")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("timeout") && !err.contains("soon"), "{err}");
    }

    #[test]
    fn known_keys_pass() -> Result<()> {
        let (limits, rest) = split(
            Scheme::S3,
            &opts(&[
                ("retries", "2"),
                ("timeout", "0.5"),
                ("endpoint", "http://127.0.0.1:1"),
                ("AWS_REGION", "eu-west-1"),
            ]),
        )?;
        assert_eq!(limits.retries, 2);
        assert_eq!(limits.timeout, Duration::from_millis(500));
        assert_eq!(rest.len(), 2);
        split(Scheme::Gcs, &opts(&[("service_account_key", "{}")]))?;
        split(
            Scheme::Http,
            &opts(&[("allow_invalid_certificates", "true")]),
        )?;
        Ok(())
    }

    #[test]
    fn defaults_bound_every_operation() -> Result<()> {
        let (limits, _) = split(Scheme::S3, &[])?;
        assert_eq!(limits.retries, 5);
        assert_eq!(limits.timeout, Duration::from_secs(30));
        assert_eq!(limits.connect(), Duration::from_secs(5));
        assert_eq!(limits.deadline, Duration::from_secs(120));
        let retry = limits.retry();
        assert_eq!(retry.retry_timeout, Duration::from_secs(120));
        assert_eq!(retry.backoff.max_backoff, Duration::from_secs(5));
        // A short timeout caps the connect timeout; an explicit one wins over both.
        let (limits, _) = split(Scheme::Gcs, &opts(&[("timeout", "2")]))?;
        assert_eq!(limits.connect(), Duration::from_secs(2));
        let (limits, rest) = split(
            Scheme::Http,
            &opts(&[("timeout", "2"), ("connect_timeout", "0.25")]),
        )?;
        assert_eq!(limits.connect(), Duration::from_millis(250));
        assert!(rest.is_empty());
        let config = limits.client_config();
        assert_eq!(config[1].1, "250ms");
        Ok(())
    }

    #[test]
    fn scrubbing() {
        assert_eq!(
            scrub("GET https://u:p@h/a failed; see http://x/y and s3://b"),
            "GET https://h/a failed; see http://x/y and s3://b"
        );
        assert_eq!(scrub("no urls"), "no urls");
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("https://u:p@host/a/b/"), "https://host/a/b");
        assert_eq!(redact("s3://bucket/layer"), "s3://bucket/layer");
    }
}
