//! git's allowed-signers file (`gpg.ssh.allowedSignersFile`, the format of ssh-keygen's
//! ALLOWED SIGNERS): one key per line, `principals [options] keytype base64-key [comment]`.
//! Options understood: `namespaces="…"` (the key signs only these namespaces; git's is
//! `git`), `valid-after` and `valid-before` (`YYYYMMDD[HHMM[SS]]`, read as UTC, compared with
//! the commit's committer time). `cert-authority` lines are refused: not supported yet.

use std::path::Path;

use anyhow::{bail, Context};
use ssh_key::public::KeyData;
use ssh_key::PublicKey;

/// One trusted key.
#[derive(Debug, Clone)]
pub struct AllowedSigner {
    pub principals: String,
    pub key: PublicKey,
    pub namespaces: Option<Vec<String>>,
    /// Unix seconds.
    pub valid_after: Option<i64>,
    pub valid_before: Option<i64>,
}

impl AllowedSigner {
    /// Whether this entry lets its key sign in `namespace` at unix time `at`.
    pub fn allows(&self, namespace: &str, at: i64) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|ns| ns.iter().any(|n| n == namespace))
            && self.valid_after.is_none_or(|t| at >= t)
            && self.valid_before.is_none_or(|t| at <= t)
    }

    pub fn has_key(&self, key: &KeyData) -> bool {
        self.key.key_data() == key
    }
}

/// Reads and parses the file; any line that does not parse is an error naming file:line.
pub fn read(path: &Path) -> anyhow::Result<Vec<AllowedSigner>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read allowed signers {}", path.display()))?;
    parse(&text).with_context(|| format!("allowed signers {}", path.display()))
}

pub fn parse(text: &str) -> anyhow::Result<Vec<AllowedSigner>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).with_context(|| format!("line {}", i + 1))?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> anyhow::Result<AllowedSigner> {
    let (principals, rest) = split_token(line);
    let rest = rest.trim_start();
    let (options, key_text) = if starts_with_key_type(rest) {
        ("", rest)
    } else {
        let (options, rest) = split_token(rest);
        (options, rest.trim_start())
    };
    let mut signer = AllowedSigner {
        principals: principals.to_string(),
        key: PublicKey::from_openssh(key_text.trim()).map_err(|e| {
            anyhow::anyhow!(
                "not a public key ({e}): expected `principals [options] keytype base64-key`"
            )
        })?,
        namespaces: None,
        valid_after: None,
        valid_before: None,
    };
    for option in split_options(options) {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        let value = value.trim_matches('"');
        match name.to_ascii_lowercase().as_str() {
            "namespaces" => {
                signer.namespaces = Some(value.split(',').map(|s| s.trim().to_string()).collect())
            }
            "valid-after" => signer.valid_after = Some(parse_time(value)?),
            "valid-before" => signer.valid_before = Some(parse_time(value)?),
            "cert-authority" => bail!("cert-authority keys are not supported yet (hint: list the signing keys themselves)"),
            other => bail!("unknown option {other:?}"),
        }
    }
    Ok(signer)
}

/// The first whitespace-separated token (quotes keep spaces) and the rest.
fn split_token(s: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (&s[..i], &s[i..]),
            _ => {}
        }
    }
    (s, "")
}

fn split_options(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut start) = (false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

fn starts_with_key_type(s: &str) -> bool {
    ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// `YYYYMMDD[HHMM[SS]][Z]` as unix seconds, UTC.
fn parse_time(s: &str) -> anyhow::Result<i64> {
    let digits = s.strip_suffix('Z').unwrap_or(s);
    let ok = digits.chars().all(|c| c.is_ascii_digit()) && matches!(digits.len(), 8 | 12 | 14);
    if !ok {
        bail!("time {s:?} is not YYYYMMDD[HHMM[SS]]");
    }
    let n = |r: std::ops::Range<usize>| digits.get(r).map_or(0, |d| d.parse::<i64>().unwrap_or(0));
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        bail!("time {s:?} is not a date");
    }
    Ok(days_from_civil(y, m, d) * 86400 + n(8..10) * 3600 + n(10..12) * 60 + n(12..14))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBB01mt4eM2UGIukk6OxOIq9WtvZNyZvhpWdRAI1U06c";

    #[test]
    fn lines_with_and_without_options_parse() {
        let text = format!(
            "# fleet signers\n\nalice@example.org {KEY} alice laptop\n\"bob@example.org,ops@example.org\" namespaces=\"git,file\",valid-after=\"20260101\",valid-before=20270101Z {KEY}\n"
        );
        let signers = parse(&text).unwrap();
        assert_eq!(signers.len(), 2);
        assert_eq!(signers[0].principals, "alice@example.org");
        assert!(signers[0].allows("git", 0));
        let bob = &signers[1];
        assert_eq!(
            bob.namespaces.as_deref(),
            Some(&["git".to_string(), "file".to_string()][..])
        );
        assert_eq!(bob.valid_after, Some(1_767_225_600));
        assert_eq!(bob.valid_before, Some(1_798_761_600));
        assert!(bob.allows("git", 1_780_000_000));
        assert!(!bob.allows("git", 1_767_225_599));
        assert!(!bob.allows("git", 1_798_761_601));
        assert!(!bob.allows("mail", 1_780_000_000));
    }

    #[test]
    fn bad_lines_name_their_line() {
        let err = format!(
            "{:#}",
            parse(&format!("a {KEY}\nb ssh-ed25519 AAAAbroken\n")).unwrap_err()
        );
        assert!(err.starts_with("line 2: not a public key"), "{err}");
        let err = format!(
            "{:#}",
            parse(&format!("a cert-authority {KEY}\n")).unwrap_err()
        );
        assert!(
            err.contains("cert-authority keys are not supported yet"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            parse(&format!("a valid-after=2026 {KEY}\n")).unwrap_err()
        );
        assert!(err.contains("is not YYYYMMDD"), "{err}");
    }
}
