//! Finding where a key or value sits in a document's text, for checks made after parsing
//! (serde gives places only for errors it raises itself). Best effort: the document's start
//! when nothing matches.

use crate::document::Chunk;

/// 1-based place of the first `key:` in the document.
pub(crate) fn locate(chunk: &Chunk<'_>, key: &str) -> (usize, usize) {
    find_key(chunk, key, 0).map_or(chunk.start, |(line, col, _)| (line, col))
}

/// (line, column, line index in the chunk) of the first `key:` at or after line `from`.
fn find_key(chunk: &Chunk<'_>, key: &str, from: usize) -> Option<(usize, usize, usize)> {
    let needle = format!("{key}:");
    for (i, line) in chunk.text.lines().enumerate().skip(from) {
        let mut search = 0;
        while let Some(found) = line[search..].find(&needle) {
            let col = search + found;
            let before = line[..col].chars().last();
            if before.is_none_or(|c| matches!(c, ' ' | '{' | ',' | '-' | '\t' | '"' | '\'')) {
                return Some((chunk.line_offset + i + 1, col + 1, i));
            }
            search = col + needle.len();
        }
    }
    None
}

/// 1-based place of the first `needle` in the document.
pub(crate) fn locate_text(chunk: &Chunk<'_>, needle: &str) -> (usize, usize) {
    locate_text_from(chunk, 0, needle).unwrap_or(chunk.start)
}

fn locate_text_from(chunk: &Chunk<'_>, from: usize, needle: &str) -> Option<(usize, usize)> {
    for (i, line) in chunk.text.lines().enumerate().skip(from) {
        if let Some(col) = line.find(needle) {
            return Some((chunk.line_offset + i + 1, col + 1));
        }
    }
    None
}

/// 1-based place of `needle` at or after the first `key:`; the key's place, or the
/// document's start, when the needle is not found there.
pub(crate) fn locate_after(chunk: &Chunk<'_>, key: &str, needle: &str) -> (usize, usize) {
    match find_key(chunk, key, 0) {
        Some((line, col, index)) => locate_text_from(chunk, index, needle).unwrap_or((line, col)),
        None => chunk.start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_values() {
        let chunk = Chunk {
            text: "kind: Container\nspec:\n  image: x\n  networks:\n    - front\n    - back\n",
            line_offset: 10,
            start: (11, 1),
        };
        assert_eq!(locate(&chunk, "image"), (13, 3));
        assert_eq!(locate(&chunk, "kind"), (11, 1));
        assert_eq!(locate(&chunk, "nothing"), (11, 1));
        assert_eq!(locate_after(&chunk, "networks", "back"), (16, 7));
        assert_eq!(locate_after(&chunk, "networks", "zzz"), (14, 3));
        assert_eq!(locate_text(&chunk, "front"), (15, 7));
        let flow = Chunk {
            text: "spec: {image: x, ports: [{hostPort: 1}]}\n",
            line_offset: 0,
            start: (1, 1),
        };
        assert_eq!(locate(&flow, "ports"), (1, 18));
        assert_eq!(locate(&flow, "hostPort"), (1, 27));
    }
}
