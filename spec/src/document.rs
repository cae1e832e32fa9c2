//! Splitting a file into YAML documents, keeping each one's place in the file.
//!
//! A line starting with `---` or `...` followed by a blank is a document marker in every
//! context (YAML 1.2, "c-forbidden"), so splitting on such lines is exact.

/// One document's text and where it sits in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk<'a> {
    pub text: &'a str,
    /// Lines of the file before `text` starts.
    pub line_offset: usize,
    /// 1-based line and column of the document's first content.
    pub start: (usize, usize),
}

fn marker(line: &str, m: &str) -> bool {
    line.strip_prefix(m)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// Where the content of a line starts (1-based column), if the line has content.
fn content_column(line: &str) -> Option<usize> {
    let body = if marker(line, "---") {
        &line[3..]
    } else {
        line
    };
    if marker(line, "...") || line.starts_with('%') {
        return None;
    }
    let trimmed = body.trim_start_matches([' ', '\t']);
    let trimmed_end = trimmed.trim_end();
    if trimmed_end.is_empty() || trimmed_end.starts_with('#') {
        return None;
    }
    if marker(line, "---") {
        return Some(1);
    }
    Some(line.len() - trimmed.len() + 1)
}

/// Splits `text` into its non-empty documents.
pub(crate) fn split(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    // The open chunk: byte start, first line index, content start, whether it has a marker.
    let mut start_byte = 0;
    let mut start_line = 0;
    let mut content: Option<(usize, usize)> = None;
    let mut has_marker = false;
    let mut offset = 0;
    let mut close = |from: usize, to: usize, line: usize, content: Option<(usize, usize)>| {
        if let Some(start) = content {
            chunks.push(Chunk {
                text: &text[from..to],
                line_offset: line,
                start,
            });
        }
    };
    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let line = raw.trim_end_matches(['\n', '\r']);
        if marker(line, "---") {
            // A new document starts here, unless the open chunk holds only directives or
            // comments with no marker yet (they belong to this document).
            if content.is_some() || has_marker {
                close(start_byte, offset, start_line, content);
                start_byte = offset;
                start_line = index;
                content = None;
            }
            has_marker = true;
        }
        if content.is_none() {
            if let Some(col) = content_column(line) {
                content = Some((index + 1, col));
            }
        }
        offset += raw.len();
        if marker(line, "...") {
            close(start_byte, offset, start_line, content);
            start_byte = offset;
            start_line = index + 1;
            content = None;
            has_marker = false;
        }
    }
    close(start_byte, text.len(), start_line, content);
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_document() {
        let c = split("# comment\napiVersion: berth/v1\nkind: Volume\n");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].line_offset, 0);
        assert_eq!(c[0].start, (2, 1));
    }

    #[test]
    fn markers_split_and_empty_documents_vanish() {
        let text = "---\na: 1\n---\n# nothing\n---\n\n  b: 2\n...\n--- {c: 3}\n";
        let c = split(text);
        let texts: Vec<&str> = c.iter().map(|c| c.text).collect();
        assert_eq!(
            texts,
            ["---\na: 1\n", "---\n\n  b: 2\n...\n", "--- {c: 3}\n"]
        );
        let starts: Vec<(usize, usize)> = c.iter().map(|c| c.start).collect();
        assert_eq!(starts, [(2, 1), (7, 3), (9, 1)]);
        let offsets: Vec<usize> = c.iter().map(|c| c.line_offset).collect();
        assert_eq!(offsets, [0, 4, 8]);
    }

    #[test]
    fn directives_stay_with_their_document() {
        let c = split("%YAML 1.2\n---\na: 1\n");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, "%YAML 1.2\n---\na: 1\n");
        assert_eq!(c[0].start, (3, 1));
    }

    #[test]
    fn dashes_inside_text_are_not_markers() {
        let c = split("a: |\n  ---\n  x\nb: '---x'\n----: 1\n");
        assert_eq!(c.len(), 1);
        assert!(split("").is_empty());
        assert!(split("# only a comment\n\n").is_empty());
    }
}
