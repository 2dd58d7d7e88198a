//! Google application-default credentials: where `gcloud auth application-default login`
//! leaves them, and the authorized-user refresh flow for that file.
//!
//! object_store reads `~/.config/gcloud/application_default_credentials.json` but ignores
//! `CLOUDSDK_CONFIG` (gcloud's own switch for its config directory), and refreshes an
//! authorized user's token at a fixed Google URL. Here the file is found the way gcloud and
//! google-auth find it, and the refresh goes to the file's `token_uri` when it names one
//! (google-auth honours that field too), else to Google's. Service-account files are left
//! to object_store, which signs their JWTs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::gcp::GcpCredential;
use object_store::{ClientOptions, CredentialProvider};
use serde::Deserialize;

use super::refresh::Refreshing;

/// Google's token endpoint (what google-auth uses when the file names none).
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The well-known ADC file: `$CLOUDSDK_CONFIG/application_default_credentials.json`, else
/// gcloud's default config directory. `None` when no such file exists.
pub fn well_known_file() -> Option<PathBuf> {
    let dir = match std::env::var_os("CLOUDSDK_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None if cfg!(windows) => PathBuf::from(std::env::var_os("APPDATA")?).join("gcloud"),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".config")
            .join("gcloud"),
    };
    let path = dir.join("application_default_credentials.json");
    path.is_file().then_some(path)
}

/// What an ADC file holds, as far as choosing a provider goes.
#[derive(Deserialize)]
pub struct AdcFile {
    /// `authorized_user`, `service_account`, `external_account`, ...
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The project the file bills by default (gcloud writes it for authorized users).
    #[serde(default)]
    pub quota_project_id: Option<String>,
}

/// An authorized user's refresh token and where to exchange it.
#[derive(Deserialize)]
struct AuthorizedUser {
    client_id: String,
    client_secret: String,
    refresh_token: String,
    #[serde(default)]
    token_uri: Option<String>,
}

/// Reads the type of the ADC file at `path`. Errors name the file, never its contents.
pub fn read_kind(path: &str) -> Result<AdcFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read Google credentials file {path}: {e}"))?;
    serde_json::from_str(&text)
        .map_err(|_| format!("Google credentials file {path} is not a credentials JSON"))
}

/// Exchanges an authorized user's refresh token for access tokens.
pub struct AuthorizedUserProvider {
    user: AuthorizedUser,
    path: String,
    client: HttpClient,
    cache: Refreshing<GcpCredential>,
}

impl std::fmt::Debug for AuthorizedUserProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthorizedUserProvider({})", self.path)
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl AuthorizedUserProvider {
    /// The provider for the authorized-user file at `path`.
    pub fn from_file(path: &str, options: &ClientOptions) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read Google credentials file {path}: {e}"))?;
        let user: AuthorizedUser = serde_json::from_str(&text).map_err(|_| {
            format!(
                "Google credentials file {path}: an authorized_user file needs client_id, \
                 client_secret and refresh_token"
            )
        })?;
        let uri = user.token_uri.as_deref().unwrap_or(GOOGLE_TOKEN_URI);
        let options = options.clone().with_allow_http(uri.starts_with("http://"));
        let client = ReqwestConnector::default()
            .connect(&options)
            .map_err(|e| format!("Google credentials file {path}: {e}"))?;
        Ok(AuthorizedUserProvider {
            user,
            path: path.to_string(),
            client,
            cache: Refreshing::default(),
        })
    }

    fn error(&self, reason: impl std::fmt::Display) -> object_store::Error {
        object_store::Error::Generic {
            store: "GCS",
            source: format!(
                "refreshing the token of the authorized user in {}: {reason}",
                self.path
            )
            .into(),
        }
    }

    async fn fetch(&self) -> object_store::Result<(GcpCredential, Option<SystemTime>)> {
        let uri = self.user.token_uri.as_deref().unwrap_or(GOOGLE_TOKEN_URI);
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", &self.user.client_id)
            .append_pair("client_secret", &self.user.client_secret)
            .append_pair("refresh_token", &self.user.refresh_token)
            .finish();
        let request = http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(HttpRequestBody::from(Bytes::from(body)))
            .map_err(|e| self.error(format!("bad token_uri: {e}")))?;
        let response = self.client.execute(request).await.map_err(|e| {
            self.error(format!("{} did not answer: {e}", super::cloud::redact(uri)))
        })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .bytes()
            .await
            .map_err(|e| self.error(e))?;
        if !status.is_success() {
            // OAuth errors are {"error": "invalid_grant", "error_description": ...}: no secrets.
            let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| "no reason given".to_string());
            return Err(self.error(format!(
                "{status}: {reason} (run `gcloud auth application-default login` again?)"
            )));
        }
        let token: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|_| self.error("the answer holds no access_token"))?;
        let expiry = token
            .expires_in
            .map(|s| SystemTime::now() + Duration::from_secs(s));
        Ok((
            GcpCredential {
                bearer: token.access_token,
            },
            expiry,
        ))
    }
}

#[async_trait::async_trait]
impl CredentialProvider for AuthorizedUserProvider {
    type Credential = GcpCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<GcpCredential>> {
        self.cache.get(|| self.fetch()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_errors_never_show_contents() {
        let dir = std::env::temp_dir().join(format!("bigarrays-adc-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("adc.json");
        let _ = std::fs::write(
            &path,
            r#"{"type": "authorized_user", "client_id": "c", "client_secret": "s3cr3t",
                "refresh_token": "r", "quota_project_id": "billing"}"#,
        );
        let shown = path.display().to_string();
        let adc = read_kind(&shown).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(adc.kind, "authorized_user");
        assert_eq!(adc.quota_project_id.as_deref(), Some("billing"));
        let _ = std::fs::write(
            &path,
            r#"{"type": "authorized_user", "client_secret": "s3cr3t"}"#,
        );
        let err = AuthorizedUserProvider::from_file(&shown, &ClientOptions::new())
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("refresh_token") && !err.contains("s3cr3t"),
            "{err}"
        );
        let _ = std::fs::write(&path, "s3cr3t");
        let err = read_kind(&shown).err().unwrap_or_default();
        assert!(
            err.contains("not a credentials JSON") && !err.contains("s3cr3t"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
