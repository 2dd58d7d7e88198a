//! AWS credentials from a profile's `credential_process`: run the command, read the JSON it
//! prints (`Version` 1, `AccessKeyId`, `SecretAccessKey`, optional `SessionToken` and
//! `Expiration`), and run it again shortly before that expiry. object_store has no such
//! provider; the format is the AWS CLI's ("Sourcing credentials with an external process").
//!
//! Messages name the profile and the program, never the output or the arguments: the
//! output is the secret, and arguments may carry one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::aws::AwsCredential;
use object_store::CredentialProvider;

use super::refresh::Refreshing;

/// A process that prints nothing for this long is an error, never a hang.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `command` (through the shell, as written in the profile) for credentials.
pub struct ProcessProvider {
    command: String,
    profile: String,
    cache: Refreshing<AwsCredential>,
}

impl std::fmt::Debug for ProcessProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcessProvider(profile {:?})", self.profile)
    }
}

impl ProcessProvider {
    /// A provider for profile `profile`'s `credential_process = command`.
    pub fn new(command: &str, profile: &str) -> Self {
        ProcessProvider {
            command: command.to_string(),
            profile: profile.to_string(),
            cache: Refreshing::default(),
        }
    }

    /// The program the command runs, for messages (its arguments may be secret).
    fn program(&self) -> &str {
        self.command.split_whitespace().next().unwrap_or("")
    }

    fn error(&self, reason: String) -> object_store::Error {
        let message = format!(
            "credential_process of AWS profile {:?} ({}): {reason}",
            self.profile,
            self.program()
        );
        object_store::Error::Generic {
            store: "S3",
            source: message.into(),
        }
    }

    async fn run(&self) -> object_store::Result<(AwsCredential, Option<SystemTime>)> {
        let command = self.command.clone();
        // On a blocking thread: std's process API waits synchronously (tokio's `process`
        // feature would rebuild every crate on tokio for this one call).
        let output = tokio::task::spawn_blocking(move || run_with_timeout(&command))
            .await
            .map_err(|e| self.error(format!("cannot run it: {e}")))?
            .map_err(|e| self.error(e))?;
        if !output.status.success() {
            // Its stderr is its own explanation (it must not print secrets there); cut
            // short so a noisy tool does not flood the message.
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr: String = stderr.trim().chars().take(400).collect();
            return Err(self.error(format!("it failed ({}): {stderr}", output.status)));
        }
        parse(&output.stdout).map_err(|reason| self.error(reason))
    }
}

/// Runs `command` through the shell, killed if it has not finished in [`PROCESS_TIMEOUT`].
fn run_with_timeout(command: &str) -> Result<std::process::Output, String> {
    use std::io::Read;
    use std::process::{Command, Stdio};

    let mut shell = if cfg!(windows) {
        let mut c = Command::new("cmd");
        c.arg("/C");
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c");
        c
    };
    let mut child = shell
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    // Drained on their own threads so that a chatty process never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < PROCESS_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer in {PROCESS_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    };
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// The credential in a `credential_process` answer, and when it expires. The error names
/// what is wrong, never a value.
pub fn parse(stdout: &[u8]) -> Result<(AwsCredential, Option<SystemTime>), String> {
    let shape = "it must print JSON with Version 1, AccessKeyId, SecretAccessKey and \
                 optionally SessionToken and Expiration";
    let json: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|_| format!("its output is not JSON: {shape}"))?;
    if json.get("Version").and_then(|v| v.as_u64()) != Some(1) {
        return Err(format!("Version is not 1: {shape}"));
    }
    let text = |key: &str| json.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let key_id = text("AccessKeyId").ok_or_else(|| format!("no AccessKeyId: {shape}"))?;
    let secret_key =
        text("SecretAccessKey").ok_or_else(|| format!("no SecretAccessKey: {shape}"))?;
    let expiry = match text("Expiration") {
        None => None,
        Some(when) => Some(expiration(&when).ok_or_else(|| {
            format!("Expiration {when:?} is not an ISO 8601 time such as 2026-01-01T00:00:00Z")
        })?),
    };
    let credential = AwsCredential {
        key_id,
        secret_key,
        token: text("SessionToken"),
    };
    Ok((credential, expiry))
}

/// An ISO 8601 / RFC 3339 time (`2026-01-01T00:00:00Z`, offsets and fractions allowed).
pub fn expiration(text: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(SystemTime::from)
}

#[async_trait::async_trait]
impl CredentialProvider for ProcessProvider {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        self.cache.get(|| self.run()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_aws_cli_format() {
        let out = br#"{"Version": 1, "AccessKeyId": "AKID", "SecretAccessKey": "s3cr3t",
                       "SessionToken": "tok", "Expiration": "2030-01-02T03:04:05Z"}"#;
        let (c, expiry) = parse(out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.key_id.as_str(), c.secret_key.as_str()),
            ("AKID", "s3cr3t")
        );
        assert_eq!(c.token.as_deref(), Some("tok"));
        let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_553_445);
        assert_eq!(expiry, Some(expected));
        let (_, never) = parse(br#"{"Version":1,"AccessKeyId":"a","SecretAccessKey":"b"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(never, None);
        assert!(expiration("2030-01-02T03:04:05.123+01:00").is_some());
    }

    #[test]
    fn errors_name_the_field_never_the_value() {
        for (out, needle) in [
            (&b"not json s3cr3t"[..], "not JSON"),
            (br#"{"Version":2,"AccessKeyId":"a","SecretAccessKey":"s3cr3t"}"#, "Version"),
            (br#"{"Version":1,"SecretAccessKey":"s3cr3t"}"#, "no AccessKeyId"),
            (br#"{"Version":1,"AccessKeyId":"a"}"#, "no SecretAccessKey"),
            (
                br#"{"Version":1,"AccessKeyId":"a","SecretAccessKey":"s3cr3t","Expiration":"soon"}"#,
                "Expiration",
            ),
        ] {
            let err = parse(out).err().unwrap_or_default();
            assert!(err.contains(needle) && !err.contains("s3cr3t"), "{err}");
        }
    }
}
