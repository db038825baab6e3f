//! `Range: bytes=…` parsing (RFC 9110 §14): one range or none; anything else is ignored.

/// How to answer a request's `Range` header for a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range: send the whole representation (200).
    Full,
    /// Send bytes `first..=last` (206).
    Partial { first: u64, last: u64 },
    /// The range is well-formed but selects nothing (416).
    Unsatisfiable,
}

/// Digits as a u64, saturating: an absurdly long number means "past any end", not an error.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Interpret a `Range` header value.
///
/// Multiple ranges are answered with the whole representation, as S3 does: serving
/// `multipart/byteranges` buys clients nothing here and opens an amplification vector.
/// Syntactically invalid values (reversed bounds, other units, junk) are ignored, as
/// RFC 9110 requires.
pub fn interpret(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(value) = header else {
        return RangeAnswer::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match number(b) {
            None => RangeAnswer::Full,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial {
                first: len.saturating_sub(n),
                last: len - 1,
            },
        },
        // bytes=a-
        (false, true) => match number(a) {
            None => RangeAnswer::Full,
            Some(first) if first >= len => RangeAnswer::Unsatisfiable,
            Some(first) => RangeAnswer::Partial {
                first,
                last: len - 1,
            },
        },
        // bytes=a-b
        (false, false) => match (number(a), number(b)) {
            (Some(first), Some(last)) if first <= last => {
                if first >= len {
                    RangeAnswer::Unsatisfiable
                } else {
                    RangeAnswer::Partial {
                        first,
                        last: last.min(len - 1),
                    }
                }
            }
            _ => RangeAnswer::Full,
        },
        (true, true) => RangeAnswer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::RangeAnswer::*;
    use super::*;

    #[test]
    fn cases() {
        let r = |h: &str| interpret(Some(h), 100);
        assert_eq!(interpret(None, 100), Full);
        assert_eq!(r("bytes=0-9"), Partial { first: 0, last: 9 });
        assert_eq!(
            r("bytes=90-"),
            Partial {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            r("bytes=-10"),
            Partial {
                first: 90,
                last: 99
            }
        );
        assert_eq!(r("bytes=-1000"), Partial { first: 0, last: 99 });
        assert_eq!(
            r("bytes=50-1000"),
            Partial {
                first: 50,
                last: 99
            }
        );
        assert_eq!(r("bytes=100-"), Unsatisfiable);
        assert_eq!(r("bytes=100-200"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=9-5"), Full);
        assert_eq!(r("bytes=0-1,5-6"), Full);
        assert_eq!(r("items=0-1"), Full);
        assert_eq!(r("bytes=x-1"), Full);
        assert_eq!(r("bytes=-"), Full);
        assert_eq!(
            r("bytes=0-99999999999999999999999999"),
            Partial { first: 0, last: 99 }
        );
        assert_eq!(r("bytes=99999999999999999999999999-"), Unsatisfiable);
        assert_eq!(interpret(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(interpret(Some("bytes=-5"), 0), Unsatisfiable);
    }
}
