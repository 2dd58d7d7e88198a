//! AWS shared config profiles (`~/.aws/credentials`, `~/.aws/config`, `AWS_PROFILE`), which
//! object_store does not read: static keys, region and endpoint as configuration keys, and
//! the credential sources object_store has no provider for (`role_arn` with
//! `source_profile` or `web_identity_token_file`, `credential_process`) as a [`Source`] for
//! `cloud.rs` to turn into one. SSO profiles are not read (their tokens live in the AWS
//! CLI's cache).

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The settings a profile can give, as object_store S3 configuration keys.
const WANTED: [(&str, &str); 5] = [
    ("aws_access_key_id", "aws_access_key_id"),
    ("aws_secret_access_key", "aws_secret_access_key"),
    ("aws_session_token", "aws_session_token"),
    ("region", "aws_region"),
    ("endpoint_url", "aws_endpoint"),
];

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn file(var: &str, default: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws").join(default)))
}

/// The `key = value` pairs of section `[name]` of an INI text. Indented lines are nested
/// per-service settings (`s3 =` blocks) and are skipped.
fn section(text: &str, name: &str) -> Option<Vec<(String, String)>> {
    let mut found = None;
    let mut inside = false;
    let mut pairs = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            inside = header.trim() == name;
            if inside {
                found = Some(());
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let (true, Some((k, v))) = (inside, trimmed.split_once('=')) {
            pairs.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    found.map(|()| pairs)
}

/// Where [`settings`] looks, for messages: "profile 'x' in <credentials file> and <config
/// file>".
pub fn searched(name: Option<&str>) -> String {
    let profile = name
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .unwrap_or_else(|| "default".to_string());
    let shown = |var: &str, default: &str| {
        file(var, default).map_or_else(|| format!("~/.aws/{default}"), |p| p.display().to_string())
    };
    format!(
        "profile '{profile}' in {} and {}",
        shown("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        shown("AWS_CONFIG_FILE", "config")
    )
}

/// A profile's credentials that object_store cannot fetch by itself.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// Static keys (only as the source of a role).
    Keys {
        key_id: String,
        secret: String,
        token: Option<String>,
    },
    /// `credential_process = command` of profile `profile`.
    Process { command: String, profile: String },
    /// `role_arn` assumed with the credentials of `source_profile`.
    Role {
        role_arn: String,
        session_name: Option<String>,
        external_id: Option<String>,
        source: Box<Source>,
    },
    /// `role_arn` assumed with the token in `web_identity_token_file`.
    WebIdentity {
        role_arn: String,
        token_file: String,
        session_name: Option<String>,
    },
}

impl std::fmt::Debug for Source {
    // Never the keys: Debug output may end up in a message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Keys { .. } => f.write_str("Keys(..)"),
            Source::Process { profile, .. } => write!(f, "Process({profile:?})"),
            Source::Role {
                role_arn, source, ..
            } => write!(f, "Role({role_arn:?}, {source:?})"),
            Source::WebIdentity { role_arn, .. } => write!(f, "WebIdentity({role_arn:?})"),
        }
    }
}

/// What a profile gives: configuration keys (static keys, region, endpoint) and a
/// credential source for object_store to be handed.
#[derive(Debug)]
pub struct Profile {
    /// `(object_store key, value)` pairs.
    pub settings: Vec<(&'static str, String)>,
    /// A role or process in place of static keys, or why the profile's role cannot be
    /// used: an error only once nothing with precedence (keys in `storage_options` or
    /// the environment) gave credentials.
    pub source: Result<Option<Source>>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            settings: Vec::new(),
            source: Ok(None),
        }
    }
}

/// The two profile files' texts.
struct Files {
    credentials: Option<String>,
    config: Option<String>,
}

impl Files {
    fn read() -> Files {
        let read = |path: Option<PathBuf>| path.and_then(|p| std::fs::read_to_string(p).ok());
        Files {
            credentials: read(file("AWS_SHARED_CREDENTIALS_FILE", "credentials")),
            config: read(file("AWS_CONFIG_FILE", "config")),
        }
    }

    /// Profile `name`'s pairs, the credentials file's first (it wins, as in the AWS CLI),
    /// or `None` when neither file has it.
    fn profile(&self, name: &str) -> Option<Vec<(String, String)>> {
        let config_section = if name == "default" {
            "default".to_string()
        } else {
            format!("profile {name}")
        };
        let sections: Vec<Vec<(String, String)>> = [
            self.credentials.as_deref().and_then(|t| section(t, name)),
            self.config
                .as_deref()
                .and_then(|t| section(t, &config_section)),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!sections.is_empty()).then(|| sections.into_iter().flatten().collect())
    }
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// Role chains longer than this are a loop in the files.
const MAX_CHAIN: usize = 8;

/// The credential source of profile `name` (with pairs `pairs`), following
/// `source_profile` links.
fn source(
    files: &Files,
    name: &str,
    pairs: &[(String, String)],
    depth: usize,
) -> Result<Option<Source>> {
    if depth > MAX_CHAIN {
        return Err(Error::invalid(format!(
            "AWS profile {name:?}: source_profile links go round in a loop"
        )));
    }
    let keys = || {
        Some(Source::Keys {
            key_id: get(pairs, "aws_access_key_id")?.to_string(),
            secret: get(pairs, "aws_secret_access_key")?.to_string(),
            token: get(pairs, "aws_session_token").map(str::to_string),
        })
    };
    if let Some(role_arn) = get(pairs, "role_arn") {
        let session_name = get(pairs, "role_session_name").map(str::to_string);
        if let Some(token_file) = get(pairs, "web_identity_token_file") {
            return Ok(Some(Source::WebIdentity {
                role_arn: role_arn.to_string(),
                token_file: token_file.to_string(),
                session_name,
            }));
        }
        let Some(from) = get(pairs, "source_profile") else {
            return Err(Error::invalid(format!(
                "AWS profile {name:?}: role_arn needs source_profile or \
                 web_identity_token_file (credential_source is not supported)"
            )));
        };
        // A profile that is its own source lends its static keys (as in the AWS CLI).
        let inner = if from == name {
            keys()
        } else {
            let from_pairs = files.profile(from).ok_or_else(|| {
                Error::invalid(format!(
                    "AWS profile {name:?}: source_profile {from:?} is in neither the \
                     credentials nor the config file"
                ))
            })?;
            source(files, from, &from_pairs, depth + 1)?
        };
        let inner = inner.ok_or_else(|| {
            Error::invalid(format!(
                "AWS profile {name:?}: source_profile {from:?} has no credentials \
                 (aws_access_key_id and aws_secret_access_key, credential_process or role_arn)"
            ))
        })?;
        return Ok(Some(Source::Role {
            role_arn: role_arn.to_string(),
            session_name,
            external_id: get(pairs, "external_id").map(str::to_string),
            source: Box::new(inner),
        }));
    }
    if let Some(command) = get(pairs, "credential_process") {
        return Ok(Some(Source::Process {
            command: command.to_string(),
            profile: name.to_string(),
        }));
    }
    Ok(keys())
}

/// The S3 configuration profile `name` (or `AWS_PROFILE`, or `default`) gives. No profile
/// files → nothing. A profile asked for by name that neither file has is an error.
pub fn settings(name: Option<&str>) -> Result<Profile> {
    let from_env = std::env::var("AWS_PROFILE").ok();
    let explicit = name.map(str::to_string).or(from_env);
    let profile = explicit.clone().unwrap_or_else(|| "default".to_string());
    let files = Files::read();
    let Some(pairs) = files.profile(&profile) else {
        return match explicit {
            Some(p) => Err(Error::invalid(format!(
                "AWS profile {p:?} is in neither the credentials nor the config file"
            ))),
            None => Ok(Profile::default()),
        };
    };
    let source = source(&files, &profile, &pairs, 0);
    let mut out = Profile::default();
    for (ini_key, config_key) in WANTED {
        // A role or a process replaces the profile's static keys, as in the AWS CLI.
        let is_key = ini_key.starts_with("aws_");
        if is_key && !matches!(source, Ok(None | Some(Source::Keys { .. }))) {
            continue;
        }
        if let Some(v) = pairs.iter().find(|(k, _)| k == ini_key).map(|(_, v)| v) {
            out.settings.push((config_key, v.clone()));
        }
    }
    out.source = source.map(|s| s.filter(|s| !matches!(s, Source::Keys { .. })));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_nesting() {
        let text = "[default]\naws_access_key_id = A\n[profile x]\nregion=eu\ns3 =\n  endpoint_url = no\nendpoint_url = http://h\n";
        assert_eq!(
            section(text, "default"),
            Some(vec![("aws_access_key_id".into(), "A".into())])
        );
        assert_eq!(
            section(text, "profile x"),
            Some(vec![
                ("region".into(), "eu".into()),
                ("s3".into(), String::new()),
                ("endpoint_url".into(), "http://h".into()),
            ])
        );
        assert_eq!(section(text, "y"), None);
    }

    fn files(credentials: &str, config: &str) -> Files {
        Files {
            credentials: Some(credentials.to_string()),
            config: Some(config.to_string()),
        }
    }

    fn source_of(f: &Files, name: &str) -> Result<Option<Source>> {
        let pairs = f.profile(name).unwrap_or_default();
        source(f, name, &pairs, 0)
    }

    #[test]
    fn roles_processes_and_chains() -> Result<()> {
        let f = files(
            "[base]\naws_access_key_id = A\naws_secret_access_key = s3cr3t\n",
            "[profile role]\nrole_arn = arn:r\nsource_profile = base\nexternal_id = x\n\
             [profile chained]\nrole_arn = arn:c\nsource_profile = role\n\
             [profile proc]\ncredential_process = /bin/creds --flag\n\
             [profile web]\nrole_arn = arn:w\nweb_identity_token_file = /t\n\
             [profile loop]\nrole_arn = arn:l\nsource_profile = loop2\n\
             [profile loop2]\nrole_arn = arn:l2\nsource_profile = loop\n\
             [profile bare]\nrole_arn = arn:b\n",
        );
        let base = Source::Keys {
            key_id: "A".into(),
            secret: "s3cr3t".into(),
            token: None,
        };
        assert_eq!(source_of(&f, "base")?, Some(base.clone()));
        let role = Source::Role {
            role_arn: "arn:r".into(),
            session_name: None,
            external_id: Some("x".into()),
            source: Box::new(base),
        };
        assert_eq!(source_of(&f, "role")?, Some(role.clone()));
        assert!(
            matches!(source_of(&f, "chained")?, Some(Source::Role { source, .. }) if *source == role)
        );
        assert_eq!(
            source_of(&f, "proc")?,
            Some(Source::Process {
                command: "/bin/creds --flag".into(),
                profile: "proc".into()
            })
        );
        assert!(matches!(
            source_of(&f, "web")?,
            Some(Source::WebIdentity { .. })
        ));
        let err = source_of(&f, "loop")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("loop"), "{err}");
        let err = source_of(&f, "bare")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("source_profile"), "{err}");
        // Debug output never shows keys.
        assert!(!format!("{role:?}").contains("s3cr3t"), "{role:?}");
        Ok(())
    }
}
