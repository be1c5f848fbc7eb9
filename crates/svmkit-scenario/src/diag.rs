//! Diagnostics for scenario files: `file:line:col`, the offending text with a caret,
//! and a hint (rendered by miette).

use std::fmt;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

use crate::ast::Span;

/// One mistake in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
    /// The label under the caret.
    pub label: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl Problem {
    /// A problem at `span`.
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        let message = message.into();
        Problem {
            label: "here".into(),
            message,
            span,
            help: None,
        }
    }

    /// With a label under the caret.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// With a hint.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Every mistake found in one file, with the file's text for rendering.
#[derive(Debug, Clone)]
pub struct ParseError {
    /// The file name as given.
    pub file: String,
    /// Its text.
    pub source: String,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl ParseError {
    /// `file:line:col` of a byte offset (1-based line and column, in characters).
    pub fn location(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let before = &self.source[..floor_char_boundary(&self.source, offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// The problems as miette diagnostics (one per problem), for rendering.
    pub fn diagnostics(&self) -> Vec<ProblemReport> {
        self.problems
            .iter()
            .map(|p| {
                let (line, col) = self.location(p.span.start);
                ProblemReport {
                    message: format!("{}:{line}:{col}: {}", self.file, p.message),
                    src: NamedSource::new(&self.file, self.source.clone()),
                    span: clamp(p.span, self.source.len()),
                    label: p.label.clone(),
                    help: p.help.clone(),
                }
            })
            .collect()
    }

    /// Renders every problem the way rustc does (`file:line:col`, the line, a caret
    /// under the span, the label and the hint), without colours.
    pub fn render(&self) -> String {
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
        let mut out = String::new();
        for d in self.diagnostics() {
            let _ = handler.render_report(&mut out, &d);
        }
        out
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn clamp(span: Span, len: usize) -> SourceSpan {
    let start = span.start.min(len);
    let end = span.end.clamp(start, len);
    (start, end - start).into()
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            let (line, col) = self.location(p.span.start);
            writeln!(f, "{}:{line}:{col}: {}", self.file, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// One problem as a miette diagnostic.
#[derive(Debug)]
pub struct ProblemReport {
    message: String,
    src: NamedSource<String>,
    span: SourceSpan,
    label: String,
    help: Option<String>,
}

impl fmt::Display for ProblemReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProblemReport {}

impl Diagnostic for ProblemReport {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(self.label.clone()),
            self.span,
        ))))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }
}

/// "did you mean `x`?" for a misspelt name among `known`.
pub fn did_you_mean<'a>(got: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(got, k), k))
        .filter(|(s, _)| *s > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!("did you mean `{k}`?"))
}
