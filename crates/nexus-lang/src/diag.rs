//! Diagnostics: a message tied to a span, rendered like rustc/bpftrace with
//! the source line, an underline, and an optional hint.

use std::fmt::Write as _;

use crate::span::{LineIndex, Span};

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The program cannot be used.
    Error,
    /// The program works but probably not as intended.
    Warning,
}

impl Severity {
    /// Lower-case name as printed in headers.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A message about a span of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, one line, lower case, no trailing period.
    pub message: String,
    /// Where.
    pub span: Span,
    /// Short text printed after the underline.
    pub label: Option<String>,
    /// How to fix it (e.g. "did you mean `printf`?").
    pub hint: Option<String>,
    /// Further context, one line each.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            label: None,
            hint: None,
            notes: Vec::new(),
        }
    }

    /// A warning at `span`.
    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(span, message)
        }
    }

    /// Set the label printed after the underline.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Set the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Set the hint only when there is one.
    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }

    /// Add a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `LINE:COL` or `LINE:COL-COL` (end exclusive) of the span's start line,
    /// as in the rendered header.
    pub fn location(&self, src: &str) -> String {
        let index = LineIndex::new(src);
        location(&index, src, self.span)
    }

    /// Render for a terminal (no colours):
    ///
    /// ```text
    /// stdin:1:9-15: error: unknown function `prinft`
    /// BEGIN { prinft("hi"); }
    ///         ~~~~~~ not a function
    /// hint: did you mean `printf`?
    /// ```
    pub fn render(&self, file_name: &str, src: &str) -> String {
        let index = LineIndex::new(src);
        self.render_with(&index, file_name, src)
    }

    /// [`Diagnostic::render`] with a precomputed line index (for many
    /// diagnostics of one source).
    pub fn render_with(&self, index: &LineIndex, file_name: &str, src: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{file_name}:{}: {}: {}",
            location(index, src, self.span),
            self.severity.name(),
            self.message
        );
        let start = index.line_col(src, self.span.start);
        let line = index.line_text(src, start.line);
        // Tabs are kept so the underline lines up under them.
        let _ = writeln!(out, "{line}");
        let prefix: String = line
            .chars()
            .take(start.col - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let line_chars = line.chars().count();
        let end = index.line_col(src, self.span.end);
        let end_col = if end.line == start.line {
            end.col
        } else {
            line_chars + 1
        };
        let width = end_col.saturating_sub(start.col).max(1);
        out.push_str(&prefix);
        out.push_str(&"~".repeat(width));
        if let Some(label) = &self.label {
            out.push(' ');
            out.push_str(label);
        }
        out.push('\n');
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "hint: {hint}");
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

fn location(index: &LineIndex, src: &str, span: Span) -> String {
    let start = index.line_col(src, span.start);
    let end = index.line_col(src, span.end);
    if span.is_empty() || end.line != start.line {
        format!("{}:{}", start.line, start.col)
    } else {
        format!("{}:{}-{}", start.line, start.col, end.col)
    }
}

/// Render every diagnostic in order, separated by blank lines.
pub fn render_all(diags: &[Diagnostic], file_name: &str, src: &str) -> String {
    let index = LineIndex::new(src);
    diags
        .iter()
        .map(|d| d.render_with(&index, file_name, src))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_header_line_underline_hint() {
        let src = "BEGIN { prinft(\"hi\"); }";
        let d = Diagnostic::error(Span::new(8, 14), "unknown function `prinft`")
            .with_label("not a function")
            .with_hint("did you mean `printf`?")
            .with_note("functions are listed in docs/language.md");
        assert_eq!(
            d.render("stdin", src),
            "stdin:1:9-15: error: unknown function `prinft`\n\
             BEGIN { prinft(\"hi\"); }\n        ~~~~~~ not a function\n\
             hint: did you mean `printf`?\n\
             note: functions are listed in docs/language.md\n"
        );
    }

    #[test]
    fn renders_empty_span_at_end_with_one_caret() {
        let src = "BEGIN {\n  x";
        let d = Diagnostic::error(Span::new(src.len(), src.len()), "unexpected end of input");
        assert_eq!(
            d.render("a.bt", src),
            "a.bt:2:4: error: unexpected end of input\n  x\n   ~\n"
        );
    }

    #[test]
    fn multi_line_span_underlines_to_end_of_first_line() {
        let src = "ab\tcd\nef";
        let d = Diagnostic::warning(Span::new(3, 8), "w");
        assert_eq!(d.render("f", src), "f:1:4: warning: w\nab\tcd\n  \t~~\n");
    }
}
