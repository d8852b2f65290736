//! A config file's text parsed once into a span-keeping TOML document, and the one error type
//! of every fedgate config file (gateway and sidecar).
//!
//! Invariants: the document is parsed once and never modified, so every span in it points into
//! the original text; a key path (`listeners[1].routes[0].sni`) maps to a span by walking the
//! document (falling back to the nearest ancestor that exists, e.g. the table a missing key
//! belongs in), and a span maps back to the innermost key path that contains it; nothing here
//! scans lines or guesses. Pure functions: nothing panics on any text or offset.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml_edit::{ImDocument, Item, Table, TableLike, Value};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `location` is `file:line:column` (or just `file` when the position is unknown).
    #[error("{location}: `{key}`: {message}")]
    Invalid {
        location: String,
        key: String,
        message: String,
    },
}

/// The key reported for errors that belong to no key (syntax errors, a missing top-level key).
pub const TOP_LEVEL: &str = "(top level)";

/// A config file whose relative paths resolve against its directory (the sidecar's and the
/// agent's): its file model and how that model is checked. [`load`] and [`parse`] do the rest.
pub(super) trait DirRelative: Sized {
    /// The file model, as serde reads it.
    type File: DeserializeOwned;

    /// Checks `file` (read from `src`); relative paths resolve against `base`.
    fn check(src: &Source<'_>, file: Self::File, base: &Path) -> Result<Self, ConfigError>;
}

/// Reads and checks the file at `path`; relative paths inside resolve against its directory.
pub(super) fn load<C: DirRelative>(path: &Path) -> Result<C, ConfigError> {
    let text = Source::read(path)?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    parse(&text, base, path)
}

/// Checks `text`; `base` is the directory relative paths resolve against and `origin` names the
/// file in errors.
pub(super) fn parse<C: DirRelative>(
    text: &str,
    base: &Path,
    origin: &Path,
) -> Result<C, ConfigError> {
    let src = Source::parse(text, origin)?;
    let file: C::File = src.deserialize().map_err(|e| src.de_error(&e))?;
    C::check(&src, file, base)
}

/// A config file's text, its name and its parsed document.
pub struct Source<'a> {
    file: &'a Path,
    text: &'a str,
    doc: ImDocument<&'a str>,
}

impl<'a> Source<'a> {
    /// Reads the file at `path` (the text is returned for [`Source::parse`]).
    pub fn read(path: &Path) -> Result<String, ConfigError> {
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses `text` (read from `file`); a TOML syntax error is reported at its position.
    pub fn parse(text: &'a str, file: &'a Path) -> Result<Source<'a>, ConfigError> {
        match ImDocument::parse(text) {
            Ok(doc) => Ok(Source { file, text, doc }),
            Err(e) => Err(ConfigError::Invalid {
                location: location(file, text, e.span()),
                key: TOP_LEVEL.to_string(),
                message: e.message().trim().to_string(),
            }),
        }
    }

    /// The file this source was read from.
    pub fn file(&self) -> &Path {
        self.file
    }

    /// Deserializes the whole document into the file model `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, toml_edit::de::Error> {
        T::deserialize(toml_edit::de::Deserializer::from(self.doc.clone()))
    }

    /// Deserializes the table at `path` alone (minus the keys in `skip`) into `T`; spans in its
    /// errors still point into the whole text.
    pub fn deserialize_table<T: DeserializeOwned>(
        &self,
        path: &str,
        skip: &[&str],
    ) -> Option<Result<T, toml_edit::de::Error>> {
        let mut table = self.node(path)?.as_table()?.clone();
        for k in skip {
            table.remove(k);
        }
        Some(toml_edit::de::from_document(toml_edit::DocumentMut::from(
            table,
        )))
    }

    /// The string value at the exact key path `path`, if the file has one there.
    pub fn str_at(&self, path: &str) -> Option<&str> {
        match self.node(path)? {
            Node::Item(i) => i.as_str(),
            Node::Value(v) => v.as_str(),
            Node::Table(_) => None,
        }
    }

    fn node(&self, path: &str) -> Option<Node<'_>> {
        let mut node = Node::Item(self.doc.as_item());
        for seg in segments(path) {
            node = node.child(&seg)?;
        }
        Some(node)
    }

    /// An error about the value at `key`, located at `key` or its nearest existing ancestor.
    pub fn error(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let key = key.into();
        ConfigError::Invalid {
            location: location(self.file, self.text, self.span_of(&key)),
            key,
            message: message.into(),
        }
    }

    /// An error about `key`, located at `at` (another key, e.g. the one that makes `key`
    /// necessary) or its nearest existing ancestor.
    pub fn error_at(
        &self,
        key: impl Into<String>,
        at: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            location: location(self.file, self.text, self.span_of(at)),
            key: key.into(),
            message: message.into(),
        }
    }

    /// A deserialization error, with the key path of the innermost item its span points at.
    pub fn de_error(&self, e: &toml_edit::de::Error) -> ConfigError {
        let key = e
            .span()
            .and_then(|s| self.path_at(s.start))
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| TOP_LEVEL.to_string());
        ConfigError::Invalid {
            location: location(self.file, self.text, e.span()),
            key,
            message: e.message().trim().to_string(),
        }
    }

    /// The span of `path`, or of its nearest ancestor present in the file.
    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut node = Node::Item(self.doc.as_item());
        let mut span = None;
        for seg in segments(path) {
            let Some(next) = node.child(&seg) else { break };
            node = next;
            span = node.span().or(span);
        }
        span
    }

    /// The key path of the innermost key or value whose span holds byte `offset`.
    pub fn path_at(&self, offset: usize) -> Option<String> {
        let mut path = String::new();
        table_path(self.doc.as_table(), offset, &mut path).then_some(path)
    }
}

/// `file:line:column` for a span start, or just `file`.
fn location(file: &Path, text: &str, span: Option<Range<usize>>) -> String {
    match span {
        Some(s) => {
            let (line, col) = line_col(text, s.start);
            format!("{}:{line}:{col}", file.display())
        }
        None => file.display().to_string(),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`; offsets past the end or
/// inside a character are clamped.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

/// One step of a key path: a key or an array index.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `a.b[1][2].c` → `a`, `b`, 1, 2, `c` (keys with dots or brackets are not used by fedgate).
fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key.to_string()));
        }
        while let Some((index, tail)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                out.push(Segment::Index(i));
            }
            rest = tail.strip_prefix('[').unwrap_or(tail);
        }
    }
    out
}

/// A place in the document: a table entry, a table of an array of tables, or an array element.
#[derive(Clone, Copy)]
enum Node<'d> {
    Item(&'d Item),
    Table(&'d Table),
    Value(&'d Value),
}

impl<'d> Node<'d> {
    fn child(self, seg: &Segment) -> Option<Node<'d>> {
        match (self, seg) {
            (Node::Item(Item::ArrayOfTables(a)), Segment::Index(i)) => a.get(*i).map(Node::Table),
            (
                Node::Item(Item::Value(Value::Array(a))) | Node::Value(Value::Array(a)),
                Segment::Index(i),
            ) => a.get(*i).map(Node::Value),
            (Node::Item(item), Segment::Key(k)) => item.as_table_like()?.get(k).map(Node::Item),
            (Node::Table(t), Segment::Key(k)) => t.get(k).map(Node::Item),
            (Node::Value(Value::InlineTable(t)), Segment::Key(k)) => t.get(k).map(Node::Value),
            _ => None,
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn as_table(self) -> Option<&'d Table> {
        match self {
            Node::Item(i) => i.as_table(),
            Node::Table(t) => Some(t),
            Node::Value(_) => None,
        }
    }
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.contains(&offset))
}

/// Appends to `path` the innermost key under `table` whose key or value span holds `offset`.
fn table_path(table: &dyn TableLike, offset: usize, path: &mut String) -> bool {
    for (k, item) in table.iter() {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(k);
        let key_span = table.get_key_value(k).and_then(|(key, _)| key.span());
        if contains(key_span, offset) || item_path(item, offset, path) {
            return true;
        }
        path.truncate(len);
    }
    false
}

fn item_path(item: &Item, offset: usize, path: &mut String) -> bool {
    match item {
        Item::Table(t) => table_path(t, offset, path) || contains(t.span(), offset),
        Item::ArrayOfTables(a) => a.iter().enumerate().any(|(i, t)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = table_path(t, offset, path) || contains(t.span(), offset);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Item::Value(v) => value_path(v, offset, path),
        Item::None => false,
    }
}

fn value_path(value: &Value, offset: usize, path: &mut String) -> bool {
    if !contains(value.span(), offset) {
        return false;
    }
    match value {
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if value_path(v, offset, path) {
                    return true;
                }
                path.truncate(len);
            }
        }
        Value::InlineTable(t) => {
            table_path(t, offset, path);
        }
        _ => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "trust_domain = \"a.test\"\n\
        [admin]\n\
        listen = \"x\"\n\
        [[listeners]]\n\
        name = \"one\"\n\
          [[listeners.routes]]\n\
          sni = \"a\"\n\
        [[listeners]]\n\
        name = \"two\"\n\
          [[listeners.routes]]\n\
          sni = \"b\"\n\
          [[listeners.routes]]\n\
          sni = \"c\"\n\
          upstreams = [\"u0\", \"u1\"]\n";

    fn offset_of(needle: &str) -> usize {
        SRC.find(needle).unwrap()
    }

    fn source() -> Source<'static> {
        Source::parse(SRC, Path::new("gw.toml")).unwrap()
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_col(SRC, 0), (1, 1));
        assert_eq!(line_col(SRC, offset_of("\"x\"")), (3, 10));
        assert_eq!(line_col(SRC, usize::MAX).0, 15);
        assert_eq!(line_col("é", 1), (1, 1));
    }

    #[test]
    fn key_paths() {
        let s = source();
        let at = |needle| s.path_at(offset_of(needle)).unwrap();
        assert_eq!(at("\"a.test\""), "trust_domain");
        assert_eq!(at("\"x\""), "admin.listen");
        assert_eq!(at("\"one\""), "listeners[0].name");
        assert_eq!(at("\"a\""), "listeners[0].routes[0].sni");
        assert_eq!(at("\"two\""), "listeners[1].name");
        assert_eq!(at("\"b\""), "listeners[1].routes[0].sni");
        assert_eq!(at("\"c\""), "listeners[1].routes[1].sni");
        assert_eq!(at("\"u1\""), "listeners[1].routes[1].upstreams[1]");
        assert_eq!(at("listen ="), "admin.listen");
    }

    #[test]
    fn spans_of_paths_fall_back_to_the_nearest_ancestor() {
        let s = source();
        let line = |path: &str| line_col(SRC, s.span_of(path).unwrap().start);
        assert_eq!(line("listeners[1].routes[1].upstreams[1]"), (14, 20));
        assert_eq!(line("listeners[1].routes[0].sni"), (11, 7));
        assert_eq!(line("admin.port"), line("admin"));
        assert_eq!(line("listeners[1].routes[7]"), line("listeners[1].routes"));
        assert!(s.span_of("nothing").is_none());
        let e = s.error("listeners[0].name", "bad").to_string();
        assert_eq!(e, "gw.toml:5:8: `listeners[0].name`: bad");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(src in "\\PC{0,200}", offset in 0usize..300, path in "[a-z.\\[\\]0-9]{0,20}") {
            let _ = line_col(&src, offset);
            if let Ok(s) = Source::parse(&src, Path::new("f")) {
                let _ = s.path_at(offset);
                let _ = s.span_of(&path);
            }
        }
    }
}
