//! A problem found while loading manifests, with its place and a hint.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::object::ObjectRef;

/// One problem. `line` and `column` are 1-based; both are 0 when the problem has no place in
/// a file (an unreadable directory), and then `Display` leaves them out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub object: Option<ObjectRef>,
    pub message: String,
    pub hint: Option<String>,
}

/// Separates a hint from the message in error texts built by this crate's parsers.
pub(crate) const HINT_SEPARATOR: &str = "; hint: ";

impl Problem {
    /// A problem from an error text that may carry a hint after `"; hint: "`.
    pub(crate) fn from_text(
        file: PathBuf,
        (line, column): (usize, usize),
        object: Option<ObjectRef>,
        text: &str,
    ) -> Problem {
        let (message, hint) = match text.split_once(HINT_SEPARATOR) {
            Some((m, h)) => (m.to_string(), Some(h.to_string())),
            None => (text.to_string(), None),
        };
        Problem {
            file,
            line,
            column,
            object,
            message,
            hint,
        }
    }
}

impl fmt::Display for Problem {
    /// `file:line:col: Container/web: message (hint: …)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Kind;

    #[test]
    fn display_with_and_without_parts() {
        let p = Problem::from_text(
            "m/web.yaml".into(),
            (3, 5),
            Some(ObjectRef::new(Kind::Container, "web")),
            "unknown field `x`; hint: did you mean `y`?",
        );
        assert_eq!(
            p.to_string(),
            "m/web.yaml:3:5: Container/web: unknown field `x` (hint: did you mean `y`?)"
        );
        let p = Problem::from_text("m".into(), (0, 0), None, "cannot read directory");
        assert_eq!(p.to_string(), "m: cannot read directory");
        assert_eq!(p.hint, None);
    }
}
