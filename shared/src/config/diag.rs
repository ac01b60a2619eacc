//! Loading a TOML config file so that *every* problem is reported with its file, line, column
//! and a hint, not just the first.
//!
//! serde stops at the first error. To go on, the loader blanks out the offending entry (with
//! spaces, so every byte offset stays valid), parses again, and repeats. A `missing field` error
//! that only appears because an earlier bad entry was blanked is not reported twice. Checks that
//! need the whole, typed config (references between sections, regexes, addresses) report through
//! [`Loaded::error_at`] with a path, which is turned back into a position in the file.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml_edit::{Document, Item, Table, Value};

/// How bad a diagnostic is. Errors make `check-config` exit 2; warnings are only printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file cannot be used as it is.
    Error,
    /// The file works but something looks wrong.
    Warning,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// How to fix it, where we can tell.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// Only the warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// One step of a path into the document: a key or an index into an array of tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSeg<'a> {
    /// A table key.
    Key(&'a str),
    /// An element of an array (of tables).
    Index(usize),
}

/// The text of a config file and the name to report it under.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// Name used in diagnostics (the path as given).
    pub file: String,
    /// The folder relative paths inside the file are resolved against.
    pub base_dir: PathBuf,
    /// The file's text.
    pub text: String,
}

/// A typed config together with what is needed to point back into its file.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The typed config.
    pub value: T,
    source: ConfigSource,
    doc: Document<String>,
    diags: Vec<Diagnostic>,
}

/// Stop blanking after this many problems: a file this broken needs a human anyway.
const MAX_PROBLEMS: usize = 100;

impl ConfigSource {
    /// Reads a file; a read error is reported as a diagnostic at 1:1.
    pub fn read(path: &Path) -> Result<ConfigSource, Diagnostics> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                file: file.clone(),
                line: 1,
                column: 1,
                severity: Severity::Error,
                message: format!("cannot read the file: {e}"),
                hint: None,
            }])
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(ConfigSource {
            file,
            base_dir,
            text,
        })
    }

    /// A source from text (tests, embedded defaults).
    pub fn from_text(file: &str, text: &str) -> ConfigSource {
        ConfigSource {
            file: file.to_owned(),
            base_dir: PathBuf::from("."),
            text: text.to_owned(),
        }
    }

    /// Line and column (1-based, column in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }

    fn diag(
        &self,
        offset: usize,
        severity: Severity,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        let (line, column) = self.line_col(offset);
        Diagnostic {
            file: self.file.clone(),
            line,
            column,
            severity,
            message,
            hint,
        }
    }

    /// Parses and deserialises the file, collecting every syntax and type problem.
    pub fn parse<T: DeserializeOwned>(self) -> Result<Loaded<T>, Diagnostics> {
        let mut text = self.text.clone();
        let mut diags = Vec::new();
        // Extents of containers from which an entry was already blanked: a later
        // `missing field` inside one of them is a consequence, not a new problem.
        let mut touched: Vec<Range<usize>> = Vec::new();
        loop {
            let doc = match Document::parse(text.clone()) {
                Ok(doc) => doc,
                Err(e) => {
                    let at = e.span().map_or(0, |s| s.start);
                    diags.push(self.diag(
                        at,
                        Severity::Error,
                        format!("TOML syntax error: {}", e.message().trim()),
                        Some("check quoting, brackets and `key = value` pairs on this line".into()),
                    ));
                    return Err(Diagnostics(diags));
                }
            };
            let err = match toml_edit::de::from_document::<T>(doc.clone()) {
                Ok(value) if diags.is_empty() => {
                    return Ok(Loaded {
                        value,
                        source: self,
                        doc,
                        diags: Vec::new(),
                    });
                }
                Ok(_) => return Err(Diagnostics(diags)),
                Err(e) => e,
            };
            let message = err.message().trim().to_owned();
            let span = err.span();
            let target = span.clone().and_then(|s| innermost(doc.as_table(), &s));
            let consequence = message.starts_with("missing field")
                && target
                    .as_ref()
                    .is_some_and(|t| touched.iter().any(|r| t.start <= r.start && r.end <= t.end));
            if !consequence {
                let at = span.as_ref().map_or(0, |s| s.start);
                let hint = hint_for(&message);
                diags.push(self.diag(at, Severity::Error, message, hint));
            }
            match target {
                Some(range) if diags.len() < MAX_PROBLEMS => {
                    blank(&mut text, &range);
                    touched.push(range);
                }
                _ => return Err(Diagnostics(diags)),
            }
        }
    }
}

impl<T> Loaded<T> {
    /// The source the config came from.
    pub fn source(&self) -> &ConfigSource {
        &self.source
    }

    /// Records an error at a path into the document (e.g. `device[2].address`).
    pub fn error_at(
        &mut self,
        path: &[PathSeg<'_>],
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push_at(path, Severity::Error, message.into(), hint);
    }

    /// Records a warning at a path into the document.
    pub fn warn_at(
        &mut self,
        path: &[PathSeg<'_>],
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push_at(path, Severity::Warning, message.into(), hint);
    }

    fn push_at(
        &mut self,
        path: &[PathSeg<'_>],
        severity: Severity,
        message: String,
        hint: Option<String>,
    ) {
        let at = span_of(self.doc.as_item(), path).map_or(0, |s| s.start);
        let d = self.source.diag(at, severity, message, hint);
        self.diags.push(d);
    }

    /// The config if no error was recorded, else every diagnostic. Warnings come along in
    /// both cases.
    pub fn finish(self) -> Result<(T, Diagnostics), Diagnostics> {
        let diags = Diagnostics(self.diags);
        if diags.has_errors() {
            Err(diags)
        } else {
            Ok((self.value, diags))
        }
    }
}

/// A node of the document while walking a path.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a Table),
    Tables(&'a toml_edit::ArrayOfTables),
    Value(&'a Value),
}

/// The span of the item at `path` (a value's span, or a table's header), or of the deepest
/// part of the path that exists.
fn span_of(root: &Item, path: &[PathSeg<'_>]) -> Option<Range<usize>> {
    let Item::Table(root) = root else {
        return None;
    };
    let mut node = Node::Table(root);
    let mut best = None;
    for seg in path {
        let step = match (seg, node) {
            (PathSeg::Key(k), Node::Table(t)) => t.get_key_value(k).map(|(key, item)| match item {
                Item::Table(inner) => (inner.span().or(key.span()), Some(Node::Table(inner))),
                Item::Value(v) => (v.span().or(key.span()), Some(Node::Value(v))),
                Item::ArrayOfTables(a) => (key.span(), Some(Node::Tables(a))),
                Item::None => (key.span(), None),
            }),
            (PathSeg::Key(k), Node::Value(Value::InlineTable(t))) => t
                .get_key_value(k)
                .map(|(key, v)| (v.span().or(key.span()), v.as_value().map(Node::Value))),
            (PathSeg::Index(i), Node::Tables(a)) => {
                a.get(*i).map(|t| (t.span(), Some(Node::Table(t))))
            }
            (PathSeg::Index(i), Node::Value(Value::Array(a))) => {
                a.get(*i).map(|v| (v.span(), Some(Node::Value(v))))
            }
            _ => None,
        };
        let Some((span, next)) = step else { break };
        best = span.or(best);
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    best
}

/// The smallest entry (key/value pair or table) whose extent contains `span`.
fn innermost(root: &Table, span: &Range<usize>) -> Option<Range<usize>> {
    let mut best: Option<Range<usize>> = None;
    let mut consider = |r: Range<usize>| {
        if r.start <= span.start && span.end <= r.end && r.start < r.end {
            let better = best.as_ref().is_none_or(|b| r.len() < b.len());
            if better {
                best = Some(r);
            }
        }
    };
    visit_table(root, &mut consider);
    best
}

fn visit_table(t: &Table, f: &mut dyn FnMut(Range<usize>)) {
    if let Some(extent) = table_extent(t) {
        f(extent);
    }
    for (k, item) in t.iter() {
        let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
        visit_item(key_span, item, f);
    }
}

fn visit_item(key_span: Option<Range<usize>>, item: &Item, f: &mut dyn FnMut(Range<usize>)) {
    match item {
        Item::Table(t) => visit_table(t, f),
        Item::ArrayOfTables(a) => a.iter().for_each(|t| visit_table(t, f)),
        Item::Value(v) => {
            if let (Some(k), Some(vs)) = (key_span, v.span()) {
                f(k.start..vs.end);
            }
            visit_value(v, f);
        }
        Item::None => {}
    }
}

fn visit_value(v: &Value, f: &mut dyn FnMut(Range<usize>)) {
    match v {
        Value::InlineTable(t) => {
            for (k, inner) in t.iter() {
                let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
                if let (Some(ks), Some(vs)) = (key_span, inner.span()) {
                    f(ks.start..vs.end);
                }
                visit_value(inner, f);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| {
            if let Some(s) = x.span() {
                f(s);
            }
            visit_value(x, f);
        }),
        _ => {}
    }
}

/// From a table's header to the end of the last thing inside it.
fn table_extent(t: &Table) -> Option<Range<usize>> {
    let header = t.span()?;
    let mut end = header.end;
    let mut grow = |r: Range<usize>| end = end.max(r.end);
    for (k, item) in t.iter() {
        let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
        if let Some(ks) = key_span.clone() {
            grow(ks);
        }
        match item {
            Item::Value(v) => {
                if let Some(s) = v.span() {
                    grow(s);
                }
            }
            Item::Table(inner) => {
                if let Some(s) = table_extent(inner) {
                    grow(s);
                }
            }
            Item::ArrayOfTables(a) => a.iter().filter_map(table_extent).for_each(&mut grow),
            Item::None => {}
        }
    }
    Some(header.start..end)
}

/// Overwrites a byte range with spaces (keeping newlines, so lines and offsets stay valid),
/// and a comma right after it, so that an entry of an inline table or array disappears.
fn blank(text: &mut String, range: &Range<usize>) {
    let mut bytes = std::mem::take(text).into_bytes();
    let end = range.end.min(bytes.len());
    for b in bytes.get_mut(range.start..end).into_iter().flatten() {
        if *b != b'\n' {
            *b = b' ';
        }
    }
    let mut i = end;
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    if i < bytes.len() && bytes[i] == b',' {
        bytes[i] = b' ';
    }
    // Only whole characters were replaced by ASCII spaces, so this stays valid UTF-8.
    *text = String::from_utf8(bytes).unwrap_or_default();
}

/// A hint for the common serde messages.
fn hint_for(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, tail) = rest.split_once('`')?;
        let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
        let closest = expected
            .iter()
            .map(|e| (strsim_distance(name, e), *e))
            .min_by_key(|(d, _)| *d);
        return Some(match closest {
            Some((d, e)) if d <= 3 => format!("did you mean `{e}`?"),
            _ if !expected.is_empty() => {
                format!("the keys allowed here are: {}", expected.join(", "))
            }
            _ => "remove it: nothing is allowed here".to_owned(),
        });
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next()?;
        return Some(format!("add `{name} = ...` to this table"));
    }
    if message.starts_with("unknown variant") {
        let expected: Vec<&str> = message.split('`').skip(3).step_by(2).collect();
        if !expected.is_empty() {
            return Some(format!("use one of: {}", expected.join(", ")));
        }
    }
    None
}

/// Levenshtein distance; small strings only.
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, dead_code)]
    use super::*;
    use crate::config::HumanDuration;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        agent: Agent,
        #[serde(default)]
        device: Vec<Dev>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Agent {
        id: String,
        #[serde(default)]
        interval: Option<HumanDuration>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Dev {
        name: String,
        snmp: Snmp,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Snmp {
        version: String,
    }

    fn problems(text: &str) -> Vec<(usize, usize, String, Option<String>)> {
        match ConfigSource::from_text("t.toml", text).parse::<Cfg>() {
            Ok(_) => vec![],
            Err(d) => {
                d.0.into_iter()
                    .map(|d| (d.line, d.column, d.message, d.hint))
                    .collect()
            }
        }
    }

    #[test]
    fn good_file_parses() {
        let text = "[agent]\nid = \"a\"\ninterval = \"2s\"\n[[device]]\nname = \"d\"\nsnmp = { version = \"2c\" }\n";
        let loaded = ConfigSource::from_text("t.toml", text)
            .parse::<Cfg>()
            .unwrap();
        assert_eq!(loaded.value.agent.interval, Some(HumanDuration::secs(2)));
        assert_eq!(loaded.value.device.len(), 1);
    }

    #[test]
    fn every_problem_is_reported_with_line_and_column() {
        let text = "[agent]\nid = \"a\"\nintervall = \"2s\"\n\n[[device]]\nname = \"d1\"\nsnmp = { version = \"2c\", comunity = \"x\" }\n\n[[device]]\nname = 5\nsnmp = { version = \"2c\" }\n";
        let p = problems(text);
        assert_eq!(p.len(), 3, "{p:#?}");
        assert_eq!((p[0].0, p[0].1), (3, 1));
        assert!(p[0].2.contains("unknown field `intervall`"), "{}", p[0].2);
        assert_eq!(p[0].3.as_deref(), Some("did you mean `interval`?"));
        assert_eq!((p[1].0, p[1].1), (7, 26));
        assert!(p[1].2.contains("comunity"));
        assert_eq!((p[2].0, p[2].1), (10, 8));
        assert!(p[2].2.contains("invalid type"), "{}", p[2].2);
    }

    #[test]
    fn a_bad_duration_points_at_the_value() {
        let p = problems("[agent]\nid = \"a\"\ninterval = \"2 parsecs\"\n");
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!((p[0].0, p[0].1), (3, 12));
        assert!(p[0].2.contains("invalid duration"), "{}", p[0].2);
        let p = problems("[agent]\nid = \"a\"\ninterval = 2\n");
        assert!(p[0].2.contains("needs a unit"), "{}", p[0].2);
    }

    #[test]
    fn missing_fields_are_reported_once() {
        let p = problems("[agent]\nid = \"a\"\n[[device]]\nsnmp = { version = 1 }\n");
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0].2.contains("invalid type"));
        assert!(p[1].2.contains("missing field `name`"), "{p:#?}");
        assert_eq!(p[1].3.as_deref(), Some("add `name = ...` to this table"));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let p = problems("[agent]\nid = \"a\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, 2);
        assert!(p[0].2.starts_with("TOML syntax error"));
    }

    #[test]
    fn semantic_errors_point_at_the_path() {
        let text = "[agent]\nid = \"a\"\n[[device]]\nname = \"d1\"\nsnmp = { version = \"2c\" }\n[[device]]\nname = \"d2\"\nsnmp = { version = \"9\" }\n";
        let mut loaded = ConfigSource::from_text("t.toml", text)
            .parse::<Cfg>()
            .unwrap();
        loaded.error_at(
            &[
                PathSeg::Key("device"),
                PathSeg::Index(1),
                PathSeg::Key("snmp"),
                PathSeg::Key("version"),
            ],
            "unsupported SNMP version",
            None,
        );
        loaded.warn_at(
            &[PathSeg::Key("agent"), PathSeg::Key("id")],
            "short id",
            None,
        );
        let diags = loaded.finish().unwrap_err();
        assert_eq!((diags.0[0].line, diags.0[0].column), (8, 20));
        assert_eq!((diags.0[1].line, diags.0[1].column), (2, 6));
        assert_eq!(diags.0[1].severity, Severity::Warning);
        assert!(
            diags
                .to_string()
                .starts_with("t.toml:8:20: error: unsupported SNMP version")
        );
    }

    #[test]
    fn distance() {
        assert_eq!(strsim_distance("lnik_interval", "link_interval"), 2);
        assert_eq!(strsim_distance("", "abc"), 3);
    }
}
