//! `printf` format strings: find the conversions and check each against
//! the type of its argument, so a bad format is a compile error rather
//! than garbage at run time.

use crate::ty::Ty;

/// One `%…` conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// The conversion character (`d`, `s`, `x`, ...).
    pub conv: char,
    /// The whole specification as written, e.g. `%-10lu`.
    pub text: String,
}

/// Why a format string is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// `%` at the very end.
    #[error("format string ends in the middle of a `%` conversion")]
    Truncated,
    /// A conversion character bpftrace does not have.
    #[error("unknown conversion `{0}` in format string")]
    Unknown(String),
}

const FLAGS: &str = "-+ #0";
const LENGTH: &str = "hlLqjzt";
const CONVERSIONS: &str = "diouxXcspr";

/// The conversions of `format` in order (`%%` is not one).
pub fn conversions(format: &str) -> Result<Vec<Conversion>, FormatError> {
    let mut out = Vec::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        let mut text = String::from('%');
        if chars.peek() == Some(&'%') {
            chars.next();
            continue;
        }
        while let Some(&c) = chars.peek() {
            if FLAGS.contains(c) || c.is_ascii_digit() || c == '.' || LENGTH.contains(c) {
                text.push(c);
                chars.next();
            } else {
                break;
            }
        }
        let Some(conv) = chars.next() else {
            return Err(FormatError::Truncated);
        };
        text.push(conv);
        if !CONVERSIONS.contains(conv) {
            return Err(FormatError::Unknown(text));
        }
        out.push(Conversion { conv, text });
    }
    Ok(out)
}

/// `Some(reason)` when `ty` cannot be printed with `conv`.
pub fn mismatch(conv: &Conversion, ty: &Ty) -> Option<String> {
    let ok = match conv.conv {
        's' => matches!(
            ty,
            Ty::Str(_) | Ty::Ksym | Ty::Usym | Ty::Kstack | Ty::Ustack | Ty::Buf(_)
        ),
        'r' => matches!(ty, Ty::Buf(_) | Ty::Str(_)),
        _ => matches!(ty, Ty::Int { .. }),
    };
    (!ok).then(|| {
        let wants = match conv.conv {
            's' => "a string",
            'r' => "a buffer",
            _ => "an integer",
        };
        format!(
            "`{}` expects {wants}, but the argument is {}",
            conv.text,
            ty.describe()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_conversions_with_flags_and_lengths() {
        let c = conversions("%d %-10s %%, %lu %08llx %c").unwrap();
        let convs: String = c.iter().map(|c| c.conv).collect();
        assert_eq!(convs, "dsuxc");
        assert_eq!(c[1].text, "%-10s");
    }

    #[test]
    fn rejects_bad_formats() {
        assert_eq!(conversions("abc %"), Err(FormatError::Truncated));
        assert_eq!(conversions("%k"), Err(FormatError::Unknown("%k".into())));
    }

    #[test]
    fn type_checks() {
        let c = &conversions("%s").unwrap()[0];
        assert!(mismatch(c, &Ty::Str(16)).is_none());
        assert!(mismatch(c, &Ty::I64).unwrap().contains("expects a string"));
        let d = &conversions("%d").unwrap()[0];
        assert!(mismatch(d, &Ty::Str(16)).is_some());
    }
}
