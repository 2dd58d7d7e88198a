//! Local paths and `file://` URLs, on every platform.
//!
//! The chronic Windows bugs of the peers come from treating `file://` URLs as `"file://" +
//! path`: `file:///C:/data` is the path `C:\data`, not `/C:/data`; `file://server/share/x`
//! (or `file:////server/share/x`) is the UNC path `\\server\share\x`; `%20` is a space.
//! Plain paths (`C:\data`, `\\server\share`, the verbatim `\\?\C:\data`) are used as
//! given: the OS parses those. Both directions live here, as pure functions of strings, so
//! that every rule is unit-tested on any machine.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The filesystem path a local URL names: a plain path (returned as given, backslashes and
/// drive letters included), or a `file:` URL (RFC 8089, percent-decoded).
pub fn path_of(url: &str) -> Result<PathBuf> {
    parse(url, cfg!(windows)).map(PathBuf::from)
}

/// The `file://` URL of an absolute path: `file:///data/em`, or on Windows
/// `file:///C:/data/em` and `file://server/share/em` for a UNC path.
pub fn url_of(path: &Path) -> String {
    format_url(&path.display().to_string(), cfg!(windows))
}

/// [`url_of`] a path that may be relative (to the working directory).
pub fn url_of_relative(path: &Path) -> String {
    match std::path::absolute(path) {
        Ok(abs) => url_of(&abs),
        Err(_) => url_of(path),
    }
}

/// [`path_of`] as text, for the platform `windows` says.
fn parse(url: &str, windows: bool) -> Result<String> {
    let Some(rest) = strip_scheme(url) else {
        return Ok(url.to_string());
    };
    // `file:///p`, `file:/p` (no authority) and `file://localhost/p` are the local `/p`;
    // any other authority names a host, which Windows reaches by UNC.
    let (host, path) = match rest.strip_prefix("//") {
        Some(after) => match after.find('/') {
            Some(0) => ("", after),
            Some(at) => after.split_at(at),
            None => (after, ""),
        },
        None => ("", rest),
    };
    let path = percent_decode(path);
    let host = if host.eq_ignore_ascii_case("localhost") {
        ""
    } else {
        host
    };
    if host.is_empty() {
        if !windows {
            return Ok(path);
        }
        // `/C:/data` (and the old `/C|/data`) is the drive path `C:\data`.
        if let Some(letter) = drive(&path) {
            return Ok(format!("{letter}:{}", native(&path[3..])));
        }
        // `file:////server/share` (and `file://///server/share`, as old browsers wrote it)
        // carries the UNC path whole; on POSIX a leading `//` means `/`, so it is left alone.
        if let Some(unc) = path.strip_prefix("//") {
            return Ok(format!(r"\\{}", native(unc.trim_start_matches('/'))));
        }
        return Ok(path);
    }
    if is_drive(host) {
        // `file://C:/data`: not RFC 8089, but written often enough to accept.
        let path = if windows { native(&path) } else { path };
        return Ok(format!("{}:{path}", &host[..1]));
    }
    if windows {
        return Ok(format!(r"\\{host}{}", native(&path)));
    }
    Err(Error::invalid(format!(
        "{url}: file URLs with a host ({host:?}) name network shares, which are Windows \
         (UNC) paths; mount the share and use its local path"
    )))
}

/// [`url_of`] for the path `text`, for the platform `windows` says.
fn format_url(text: &str, windows: bool) -> String {
    if !windows {
        return format!("file://{text}");
    }
    // Verbatim prefixes (`\\?\C:\`, `\\?\UNC\server\share`) come from canonicalising.
    let text = text.replace('\\', "/");
    let text = match text.strip_prefix("//?/") {
        Some(rest) => rest
            .strip_prefix("UNC/")
            .map_or_else(|| rest.to_string(), |unc| format!("//{unc}")),
        None => text,
    };
    match text.strip_prefix("//") {
        Some(unc) => format!("file://{unc}"),
        None => format!("file:///{}", text.trim_start_matches('/')),
    }
}

/// `path` with Windows' own separator, which verbatim (`\\?\`) paths built from it need.
fn native(path: &str) -> String {
    path.replace('/', r"\")
}

/// What follows `file:` (any case), or `None` when `url` is not a file URL.
fn strip_scheme(url: &str) -> Option<&str> {
    let head = url.get(..5)?;
    head.eq_ignore_ascii_case("file:").then(|| &url[5..])
}

/// The drive letter of `/C:/...`, `/C:` or `/C|/...`.
fn drive(path: &str) -> Option<char> {
    let bytes = path.as_bytes();
    let letter = *bytes.get(1)?;
    let ok = bytes[0] == b'/'
        && letter.is_ascii_alphabetic()
        && matches!(bytes.get(2), Some(b':' | b'|'))
        && matches!(bytes.get(3), None | Some(b'/'));
    ok.then_some(letter as char)
}

fn is_drive(host: &str) -> bool {
    let b = host.as_bytes();
    b.len() == 2 && b[0].is_ascii_alphabetic() && matches!(b[1], b':' | b'|')
}

/// `%XX` sequences decoded; text whose decoding is not UTF-8 is kept as it was.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if let (b'%', Some(hi), Some(lo)) = (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(windows: bool, url: &str) -> String {
        parse(url, windows).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn plain_paths_are_left_alone() {
        for p in [
            "/data/em",
            "rel/em",
            r"C:\data\em",
            r"c:\data\My Layer",
            r"\\server\share\em",
            r"\\?\C:\data\em",
            r"\\?\UNC\server\share\em",
            r"\\.\C:\data",
            "C:/data",
            "C:",
            "data/file:x",
        ] {
            assert_eq!(on(true, p), p);
            assert_eq!(on(false, p), p);
        }
    }

    #[test]
    fn posix_file_urls() {
        assert_eq!(on(false, "file:///data/em"), "/data/em");
        assert_eq!(on(false, "FILE:///data/em"), "/data/em");
        assert_eq!(on(false, "file:/data/em"), "/data/em");
        assert_eq!(on(false, "file://localhost/data/em"), "/data/em");
        assert_eq!(on(false, "file:///data/my%20em"), "/data/my em");
        assert_eq!(on(false, "file:///data/100%"), "/data/100%");
        assert_eq!(on(false, "file:///data/%zz"), "/data/%zz");
        // A drive-like first segment is an ordinary directory on POSIX.
        assert_eq!(on(false, "file:///C:/data"), "/C:/data");
        // POSIX reads a leading `//` as `/`: no UNC here.
        assert_eq!(on(false, "file:////data/em"), "//data/em");
        assert!(on(false, "file://server/share/em").starts_with("error: "));
        assert!(on(false, "file://server/share/em").contains("UNC"));
    }

    #[test]
    fn windows_drive_urls() {
        assert_eq!(on(true, "file:///C:/data/em"), r"C:\data\em");
        assert_eq!(on(true, "file:///c:/data/em"), r"c:\data\em");
        assert_eq!(on(true, "file:///C|/data/em"), r"C:\data\em");
        assert_eq!(on(true, "file:///C:"), "C:");
        assert_eq!(on(true, "file:///C:/"), r"C:\");
        assert_eq!(on(true, "file:///C:/data/em/"), r"C:\data\em\");
        assert_eq!(on(true, "file://C:/data/em"), r"C:\data\em");
        assert_eq!(on(true, "file:/C:/data/em"), r"C:\data\em");
        assert_eq!(on(true, "file://localhost/C:/data/em"), r"C:\data\em");
        assert_eq!(on(true, "FILE://LOCALHOST/C:/data/em"), r"C:\data\em");
        assert_eq!(on(true, "file:///C:/My%20Data/em"), r"C:\My Data\em");
        // `/Cx/...` is no drive, and neither is a drive letter past the first segment.
        assert_eq!(on(true, "file:///Cx/data"), "/Cx/data");
        assert_eq!(on(true, "file:///data/C:/em"), "/data/C:/em");
    }

    #[test]
    fn windows_unc_urls() {
        assert_eq!(on(true, "file://server/share/em"), r"\\server\share\em");
        assert_eq!(on(true, "FILE://Server/share/em"), r"\\Server\share\em");
        assert_eq!(
            on(true, "file://server/share/my%20em"),
            r"\\server\share\my em"
        );
        assert_eq!(on(true, "file:////server/share/em"), r"\\server\share\em");
        assert_eq!(on(true, "file://///server/share/em"), r"\\server\share\em");
        assert_eq!(on(true, "file://server"), r"\\server");
    }

    #[test]
    fn urls_of_paths() {
        assert_eq!(format_url("/data/em", false), "file:///data/em");
        assert_eq!(format_url(r"C:\data\em", true), "file:///C:/data/em");
        assert_eq!(format_url("C:/data/em", true), "file:///C:/data/em");
        assert_eq!(format_url(r"\\?\C:\data\em", true), "file:///C:/data/em");
        assert_eq!(
            format_url(r"\\server\share\em", true),
            "file://server/share/em"
        );
        assert_eq!(
            format_url(r"\\?\UNC\server\share\em", true),
            "file://server/share/em"
        );
    }

    #[test]
    fn urls_round_trip() {
        for (path, windows) in [
            ("/data/em", false),
            (r"C:\data\em", true),
            (r"\\server\share\em", true),
        ] {
            assert_eq!(on(windows, &format_url(path, windows)), path);
        }
        // Verbatim paths come back in their ordinary form, which names the same file.
        assert_eq!(
            on(true, &format_url(r"\\?\C:\data\em", true)),
            r"C:\data\em"
        );
        assert_eq!(
            on(true, &format_url(r"\\?\UNC\server\share\em", true)),
            r"\\server\share\em"
        );
    }
}
