//! YAML source files: parsed to JSON values (for schema validation and serde)
//! together with the line of every node, so that every problem can be
//! reported as `file:line`.

use serde_json::Value;
use serde_saphyr::granit_parser::{Event, Parser};
use std::collections::HashMap;

/// A parsed YAML document and where each of its nodes starts.
#[derive(Debug)]
pub struct YamlDoc {
    /// The document as JSON.
    pub value: Value,
    lines: HashMap<String, usize>,
}

/// A YAML syntax error.
#[derive(Debug)]
pub struct YamlError {
    /// 1-based line of the error.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl YamlDoc {
    /// Parses YAML text.
    pub fn parse(text: &str) -> Result<YamlDoc, YamlError> {
        let lines = node_lines(text)?;
        let value: Value = serde_saphyr::from_str(text).map_err(|e| YamlError {
            line: e.location().map_or(1, |l| l.line() as usize),
            message: first_line(&e.to_string()),
        })?;
        Ok(YamlDoc { value, lines })
    }

    /// The line of the node at a JSON pointer (`/when/all/0`), or of its
    /// nearest ancestor that has one.
    pub fn line_of(&self, pointer: &str) -> usize {
        let mut pointer = pointer.to_string();
        loop {
            if let Some(line) = self.lines.get(&pointer) {
                return *line;
            }
            match pointer.rfind('/') {
                Some(cut) => pointer.truncate(cut),
                None => return 1,
            }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

/// Walks the parser's events, recording the line of every key and item.
fn node_lines(text: &str) -> Result<HashMap<String, usize>, YamlError> {
    let mut lines = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| YamlError {
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
        let line = span.start.line();
        match event {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Map {
                    path,
                    key: key @ None,
                }) = stack.last_mut()
                {
                    let pointer = format!("{path}/{}", escape(&text));
                    lines.insert(pointer.clone(), line);
                    *key = Some(pointer);
                } else {
                    child_path(&mut stack, &mut lines, line);
                }
            }
            Event::Alias(_) => {
                child_path(&mut stack, &mut lines, line);
            }
            Event::MappingStart(..) => {
                let path = child_path(&mut stack, &mut lines, line);
                stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = child_path(&mut stack, &mut lines, line);
                stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    Ok(lines)
}

/// The pointer of the value node now starting, advancing its parent frame.
fn child_path(stack: &mut [Frame], lines: &mut HashMap<String, usize>, line: usize) -> String {
    match stack.last_mut() {
        None => String::new(),
        Some(Frame::Map { key, .. }) => key.take().unwrap_or_default(),
        Some(Frame::Seq { path, next }) => {
            let pointer = format!("{path}/{next}");
            *next += 1;
            lines.insert(pointer.clone(), line);
            pointer
        }
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Converts a serde path (`when.all[2].age`) to a JSON pointer (`/when/all/2/age`).
pub fn serde_path_to_pointer(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('.').filter(|s| !s.is_empty() && *s != "?") {
        let mut parts = segment.split('[');
        if let Some(name) = parts.next().filter(|n| !n.is_empty()) {
            out.push('/');
            out.push_str(&escape(name));
        }
        for index in parts {
            out.push('/');
            out.push_str(index.trim_end_matches(']'));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_of_nested_nodes() {
        let text = "id: x\nwhen:\n  all:\n    - age: { min: 70 }\n    - sex: male\ncard:\n  links:\n    - url: u\n";
        let doc = YamlDoc::parse(text).unwrap();
        assert_eq!(doc.line_of("/id"), 1);
        assert_eq!(doc.line_of("/when/all/0/age/min"), 4);
        assert_eq!(doc.line_of("/when/all/1"), 5);
        assert_eq!(doc.line_of("/card/links/0/url"), 8);
        assert_eq!(doc.line_of("/card/links/7"), 7, "falls back to the parent");
        assert_eq!(doc.value["when"]["all"][0]["age"]["min"], 70);
    }

    #[test]
    fn reports_syntax_errors_with_a_line() {
        let err = YamlDoc::parse("a: 1\nb: [unclosed\nc: 2\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
    }

    #[test]
    fn converts_serde_paths() {
        assert_eq!(serde_path_to_pointer("when.all[2].age"), "/when/all/2/age");
        assert_eq!(serde_path_to_pointer("cases[0]"), "/cases/0");
    }
}
