//! Temporary AWS credentials from STS: `AssumeRole` signed with a source profile's
//! credentials (`role_arn` + `source_profile` profiles), and `AssumeRoleWithWebIdentity`
//! with a token file (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as Kubernetes sets
//! them). object_store does not assume roles, and its web-identity provider refuses an
//! `http://` STS endpoint (an on-premises STS, a loopback stand-in), so both calls are
//! here, against the configured STS endpoint, refreshed before they expire.
//!
//! Requests are signed by object_store's `AwsAuthorizer`; messages carry STS's error code
//! and message, never a credential or the token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::{ClientOptions, CredentialProvider};
use serde::Deserialize;

use super::aws_process::expiration;
use super::refresh::Refreshing;

/// Where the role's credentials come from.
pub enum Grant {
    /// `AssumeRole`, signed with these credentials (a source profile's).
    AssumeRole {
        source: Arc<dyn CredentialProvider<Credential = AwsCredential>>,
        external_id: Option<String>,
    },
    /// `AssumeRoleWithWebIdentity` with the token in this file (read on each refresh:
    /// Kubernetes rotates it).
    WebIdentity { token_file: String },
}

/// Asks STS at `endpoint` for role `role_arn`'s credentials.
pub struct StsProvider {
    endpoint: String,
    region: String,
    role_arn: String,
    session_name: String,
    grant: Grant,
    client: HttpClient,
    cache: Refreshing<AwsCredential>,
}

impl std::fmt::Debug for StsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StsProvider({}, {})", self.endpoint, self.role_arn)
    }
}

/// The STS endpoint: the configured one, else the region's.
pub fn endpoint(configured: Option<String>, region: &str) -> String {
    configured
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"))
}

impl StsProvider {
    /// A provider for `role_arn`, asking `endpoint` (signed for `region`). `options` are
    /// the store's client options (timeouts, proxy); plain http is allowed only when the
    /// endpoint itself says `http://`.
    pub fn new(
        endpoint: String,
        region: String,
        role_arn: String,
        session_name: Option<String>,
        grant: Grant,
        options: &ClientOptions,
    ) -> object_store::Result<Self> {
        let options = options
            .clone()
            .with_allow_http(endpoint.starts_with("http://"));
        let client = ReqwestConnector::default().connect(&options)?;
        Ok(StsProvider {
            endpoint,
            region,
            role_arn,
            session_name: session_name.unwrap_or_else(|| "bigarrays".to_string()),
            grant,
            client,
            cache: Refreshing::default(),
        })
    }

    fn error(&self, reason: impl std::fmt::Display) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: format!(
                "STS at {} for role {}: {reason}",
                super::cloud::redact(&self.endpoint),
                self.role_arn
            )
            .into(),
        }
    }

    /// The request body (a form, as STS's query API takes it).
    fn form(&self, token: Option<&str>) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", &self.role_arn)
            .append_pair("RoleSessionName", &self.session_name);
        match &self.grant {
            Grant::WebIdentity { .. } => {
                form.append_pair("Action", "AssumeRoleWithWebIdentity")
                    .append_pair("WebIdentityToken", token.unwrap_or_default().trim());
            }
            Grant::AssumeRole { external_id, .. } => {
                form.append_pair("Action", "AssumeRole");
                if let Some(id) = external_id {
                    form.append_pair("ExternalId", id);
                }
            }
        }
        form.finish()
    }

    async fn fetch(&self) -> object_store::Result<(AwsCredential, Option<SystemTime>)> {
        // The source's credentials first: the form serializer cannot be held across an await.
        let (source, token) = match &self.grant {
            Grant::AssumeRole { source, .. } => (Some(source.get_credential().await?), None),
            Grant::WebIdentity { token_file } => {
                let token = std::fs::read_to_string(token_file).map_err(|e| {
                    self.error(format!(
                        "cannot read the web identity token file {token_file}: {e}"
                    ))
                })?;
                (None, Some(token))
            }
        };
        let body = self.form(token.as_deref());
        let mut last = None;
        // A dropped connection or a 5xx is retried twice; STS refusing is final.
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << (2 * attempt))).await;
            }
            let mut request = http::Request::builder()
                .method("POST")
                .uri(&self.endpoint)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/xml")
                .body(HttpRequestBody::from(Bytes::from(body.clone())))
                .map_err(|e| self.error(format!("bad endpoint: {e}")))?;
            if let Some(credential) = &source {
                AwsAuthorizer::new(credential, "sts", &self.region)
                    .try_authorize(&mut request, None)?;
            }
            let response = match self.client.execute(request).await {
                Ok(r) => r,
                Err(e) => {
                    last = Some(self.error(e));
                    continue;
                }
            };
            let status = response.status();
            let bytes = match response.into_body().bytes().await {
                Ok(b) => b,
                Err(e) => {
                    last = Some(self.error(e));
                    continue;
                }
            };
            if status.is_server_error() {
                last = Some(self.error(format!("{status}: {}", refusal(&bytes))));
                continue;
            }
            if !status.is_success() {
                return Err(self.error(format!("{status}: {}", refusal(&bytes))));
            }
            return parse(&bytes).map_err(|e| self.error(e));
        }
        Err(last.unwrap_or_else(|| self.error("no answer")))
    }
}

#[async_trait::async_trait]
impl CredentialProvider for StsProvider {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        self.cache.get(|| self.fetch()).await
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expiration: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlResult {
    credentials: XmlCredentials,
}

/// Either answer: `<AssumeRoleResponse><AssumeRoleResult>` or the web-identity one.
#[derive(Deserialize)]
struct XmlResponse {
    #[serde(rename = "AssumeRoleResult")]
    assume_role: Option<XmlResult>,
    #[serde(rename = "AssumeRoleWithWebIdentityResult")]
    web_identity: Option<XmlResult>,
}

/// The credentials in an STS answer, and when they expire.
pub fn parse(xml: &[u8]) -> Result<(AwsCredential, Option<SystemTime>), String> {
    let text = std::str::from_utf8(xml).map_err(|_| "the answer is not UTF-8".to_string())?;
    let response: XmlResponse = quick_xml::de::from_str(text)
        .map_err(|_| "the answer is not an AssumeRole response".to_string())?;
    let result = response
        .assume_role
        .or(response.web_identity)
        .ok_or_else(|| "the answer holds no credentials".to_string())?;
    let c = result.credentials;
    let expiry = match c.expiration {
        Some(when) => {
            Some(expiration(&when).ok_or_else(|| format!("Expiration {when:?} is not a time"))?)
        }
        None => None,
    };
    Ok((
        AwsCredential {
            key_id: c.access_key_id,
            secret_key: c.secret_access_key,
            token: c.session_token,
        },
        expiry,
    ))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct XmlError {
    code: String,
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlErrorResponse {
    error: XmlError,
}

/// STS's own reason for a refusal (`Code: Message`), or a note that it gave none.
fn refusal(body: &[u8]) -> String {
    std::str::from_utf8(body)
        .ok()
        .and_then(|t| quick_xml::de::from_str::<XmlErrorResponse>(t).ok())
        .map(|r| format!("{}: {}", r.error.code, r.error.message))
        .unwrap_or_else(|| "no reason given".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_answers() {
        for action in ["AssumeRole", "AssumeRoleWithWebIdentity"] {
            let xml = format!(
                "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                 <{action}Result><Credentials><AccessKeyId>ASIA1</AccessKeyId>\
                 <SecretAccessKey>s3cr3t</SecretAccessKey><SessionToken>tok</SessionToken>\
                 <Expiration>2030-01-02T03:04:05Z</Expiration></Credentials>\
                 <AssumedRoleUser><Arn>arn</Arn></AssumedRoleUser></{action}Result>\
                 <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></{action}Response>"
            );
            let (c, expiry) = parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.key_id, "ASIA1");
            assert_eq!(c.secret_key, "s3cr3t");
            assert_eq!(c.token.as_deref(), Some("tok"));
            assert!(expiry.is_some());
        }
        let err = parse(b"<Nope/>").err().unwrap_or_default();
        assert!(
            err.contains("no credentials") || err.contains("not an"),
            "{err}"
        );
    }

    #[test]
    fn refusals_give_the_code() {
        let xml = b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                    <Message>not allowed</Message></Error></ErrorResponse>";
        assert_eq!(refusal(xml), "AccessDenied: not allowed");
        assert_eq!(refusal(b"garbage"), "no reason given");
    }

    #[test]
    fn default_endpoint_is_regional() {
        assert_eq!(
            endpoint(None, "eu-west-1"),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(endpoint(Some("http://h:1".into()), "x"), "http://h:1");
    }
}
