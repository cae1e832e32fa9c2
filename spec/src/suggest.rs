//! "Did you mean" hints for unknown fields and values, by edit distance.

/// Edit distance (insert, delete, substitute, swap of neighbours), ignoring ASCII case.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if word.chars().count() > 64 {
        return None;
    }
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Names between backticks in serde's "expected one of `a`, `b`" lists.
fn backticked(list: &str) -> Vec<&str> {
    list.split('`').skip(1).step_by(2).collect()
}

/// Rewrites serde's unknown field/variant messages into a short message and a hint.
///
/// `path` is serde_yaml's path of the mapping (`.` for the root). Other messages pass through.
pub(crate) fn rewrite(path: &str, message: &str) -> String {
    let sep = crate::problem::HINT_SEPARATOR;
    let at = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let Some((field, expected)) = rest.split_once('`') else {
            return message.to_string();
        };
        let known = backticked(expected);
        if field == "<<" {
            return format!("unknown field `{}`{sep}yaml merge keys (<<) are not supported, write the fields out", at(field));
        }
        let hint = match closest(field, &known) {
            Some(best) => format!("did you mean `{best}`?"),
            None if known.is_empty() => "this mapping takes no fields".to_string(),
            None => format!("known fields here: {}", known.join(", ")),
        };
        return format!("unknown field `{}`{sep}{hint}", at(field));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let Some((value, expected)) = rest.split_once('`') else {
            return message.to_string();
        };
        let known = backticked(expected);
        let prefix = if path == "." || path.is_empty() {
            String::new()
        } else {
            format!("{path}: ")
        };
        let hint = match closest(value, &known) {
            Some(best) => format!("did you mean `{best}`? (one of {})", known.join(", ")),
            None => format!("write one of {}", known.join(", ")),
        };
        return format!("{prefix}unknown value `{value}`{sep}{hint}");
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some((field, _)) = rest.split_once('`') {
            let at = if path == "." || path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            };
            return format!("{at}missing field `{field}`{sep}add {field}, it is required here");
        }
    }
    if path == "." || path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("imagePullpolicy", "imagePullPolicy"), 0);
        assert_eq!(distance("imgae", "image"), 1);
        assert_eq!(distance("comand", "command"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn closest_only_when_close() {
        let fields = ["image", "imagePullPolicy", "command", "args"];
        assert_eq!(closest("imagePullpolicy", &fields), Some("imagePullPolicy"));
        assert_eq!(closest("commands", &fields), Some("command"));
        assert_eq!(closest("volumes", &fields), None);
    }

    #[test]
    fn rewrites_serde_messages() {
        let m = rewrite(
            "spec",
            "unknown field `imagePullpolicy`, expected one of `image`, `imagePullPolicy`",
        );
        assert_eq!(
            m,
            "unknown field `spec.imagePullpolicy`; hint: did you mean `imagePullPolicy`?"
        );
        let m = rewrite(".", "unknown field `foo`, expected one of `kind`, `spec`");
        assert_eq!(
            m,
            "unknown field `foo`; hint: known fields here: kind, spec"
        );
        let m = rewrite(
            "spec.restartPolicy",
            "unknown variant `always`, expected one of `Always`, `OnFailure`, `Never`",
        );
        assert_eq!(
            m,
            "spec.restartPolicy: unknown value `always`; hint: did you mean `Always`? (one of Always, OnFailure, Never)"
        );
        assert_eq!(
            rewrite("spec", "missing field `image`"),
            "spec: missing field `image`; hint: add image, it is required here"
        );
        let m = rewrite("spec", "unknown field `<<`, expected one of `image`");
        assert!(m.contains("merge keys (<<) are not supported"), "{m}");
    }
}
