//! Media type by magic bytes (never by name or Content-Type), and the allow-list per kind.

use crate::media::MediaKind;

/// A sniffed type: a short stable name and its MIME type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    pub name: &'static str,
    pub mime: &'static str,
}

/// Identify `head` (the first bytes of a file, up to 4 KiB).
pub fn sniff(head: &[u8]) -> Sniffed {
    let _ = head;
    Sniffed {
        name: "unknown",
        mime: "application/octet-stream",
    }
}

/// Whether a file of this type may be sent as `kind`.
pub fn allowed(kind: MediaKind, s: &Sniffed) -> bool {
    kind == MediaKind::Document && !s.name.is_empty()
}
