//! AWS shared config profiles (`~/.aws/credentials`, `~/.aws/config`, `AWS_PROFILE`), which
//! object_store does not read. Only static keys, region and endpoint are taken: SSO, roles
//! and `credential_process` need the AWS SDK, and users with those export variables instead.

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

/// The S3 configuration profile `name` (or `AWS_PROFILE`, or `default`) gives, as
/// `(object_store key, value)` pairs. No profile files → nothing. A profile asked for by
/// name that neither file has is an error.
pub fn settings(name: Option<&str>) -> Result<Vec<(&'static str, String)>> {
    let from_env = std::env::var("AWS_PROFILE").ok();
    let explicit = name.map(str::to_string).or(from_env);
    let profile = explicit.clone().unwrap_or_else(|| "default".to_string());
    let read = |path: Option<PathBuf>| path.and_then(|p| std::fs::read_to_string(p).ok());
    let credentials = read(file("AWS_SHARED_CREDENTIALS_FILE", "credentials"));
    let config = read(file("AWS_CONFIG_FILE", "config"));
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    // The credentials file wins over the config file, as in the AWS CLI.
    let sections: Vec<Vec<(String, String)>> = [
        credentials.as_deref().and_then(|t| section(t, &profile)),
        config.as_deref().and_then(|t| section(t, &config_section)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if sections.is_empty() {
        return match explicit {
            Some(p) => Err(Error::invalid(format!(
                "AWS profile {p:?} is in neither the credentials nor the config file"
            ))),
            None => Ok(Vec::new()),
        };
    }
    let mut out = Vec::new();
    for (ini_key, config_key) in WANTED {
        let value = sections
            .iter()
            .find_map(|pairs| pairs.iter().find(|(k, _)| k == ini_key));
        if let Some((_, v)) = value {
            out.push((config_key, v.clone()));
        }
    }
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
}
