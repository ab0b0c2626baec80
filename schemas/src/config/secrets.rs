//! Keeping secrets out of logs and messages: URLs with their passwords hidden, and option maps
//! whose secret values are hidden when printed.

use std::collections::BTreeMap;
use std::fmt;

/// Shown in place of a secret.
pub const HIDDEN: &str = "***";

/// Whether an option key (librdkafka or object store) names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "credential",
        "private",
        ".pem",
        "sasl.oauthbearer.config",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// `url` with the password of its user info and any `password`-like query parameter hidden.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &base[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => {
                    format!("{}{user}:{HIDDEN}{}", &base[..scheme_end + 3], &base[at..])
                }
                None => base.to_string(),
            }
        }
        _ => base.to_string(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_key(name) => format!("{name}={HIDDEN}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// An option map printed with its secret values hidden.
pub struct RedactedOptions<'a>(pub &'a BTreeMap<String, String>);

impl fmt::Debug for RedactedOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(key, value)| {
                let shown = if is_secret_key(key) {
                    HIDDEN
                } else {
                    value.as_str()
                };
                (key, shown)
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden_wherever_they_are() {
        assert_eq!(
            redact_url("postgres://braid:secret@127.0.0.1:5432/braid"),
            "postgres://braid:***@127.0.0.1:5432/braid"
        );
        assert_eq!(
            redact_url("postgres://braid@host/db?password=secret&sslmode=require&sslpassword=x"),
            "postgres://braid@host/db?password=***&sslmode=require&sslpassword=***"
        );
        assert_eq!(
            redact_url("postgres://braid@host/db"),
            "postgres://braid@host/db"
        );
        assert_eq!(redact_url("postgres://host/db"), "postgres://host/db");
    }

    #[test]
    fn secret_options_are_hidden_when_printed() {
        let options: BTreeMap<String, String> = [
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "hunter3"),
            ("AWS_SECRET_ACCESS_KEY", "hunter4"),
            ("security.protocol", "SASL_SSL"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let shown = format!("{:?}", RedactedOptions(&options));
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("SASL_SSL"), "{shown}");
    }
}
