//! One rule for counting a request body on every upload path (single, seal-for-me, tus
//! PATCH): more bytes than declared is a length mismatch and more than the limit is too
//! large, each as soon as the piece that crosses arrives, so nothing beyond it is read; at the
//! end the count must equal what was declared.

use crate::error::ApiError;

#[derive(Debug)]
pub struct BodyLimit {
    received: u64,
    limit: u64,
    declared: Option<u64>,
    /// What the limit is for, as the 413 body names it (a media kind, or "upload").
    what: &'static str,
}

impl BodyLimit {
    pub fn new(what: &'static str, limit: u64, declared: Option<u64>) -> BodyLimit {
        BodyLimit {
            received: 0,
            limit,
            declared,
            what,
        }
    }

    /// Count a piece of `len` bytes.
    pub fn take(&mut self, len: usize) -> Result<(), ApiError> {
        let received = self.received + len as u64;
        if self.declared.is_some_and(|d| received > d) {
            return Err(ApiError::LengthMismatch);
        }
        if received > self.limit {
            return Err(ApiError::TooLarge {
                kind: self.what,
                declared: received,
                limit: self.limit,
            });
        }
        self.received = received;
        Ok(())
    }

    /// Bytes counted so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The body ended: it must be as long as declared. Returns its length.
    pub fn finish(&self) -> Result<u64, ApiError> {
        if self.declared.is_some_and(|d| d != self.received) {
            return Err(ApiError::LengthMismatch);
        }
        Ok(self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_length_and_limit() {
        let mut b = BodyLimit::new("image", 10, Some(8));
        b.take(5).unwrap();
        assert!(matches!(b.finish(), Err(ApiError::LengthMismatch)));
        assert!(matches!(b.take(4), Err(ApiError::LengthMismatch)));
        b.take(3).unwrap();
        assert_eq!(b.finish().unwrap(), 8);

        let mut b = BodyLimit::new("upload", 10, None);
        b.take(10).unwrap();
        assert!(matches!(
            b.take(1),
            Err(ApiError::TooLarge {
                declared: 11,
                limit: 10,
                ..
            })
        ));
        assert_eq!(b.received(), 10, "a refused piece is not counted");
    }
}
