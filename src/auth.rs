//! Gateway authentication: bearer API keys matched by SHA-256 in constant time, and scopes.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Upload,
    Token,
    Delete,
    Seal,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "upload" => Scope::Upload,
            "token" => Scope::Token,
            "delete" => Scope::Delete,
            "seal" => Scope::Seal,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Upload => "upload",
            Scope::Token => "token",
            Scope::Delete => "delete",
            Scope::Seal => "seal",
        }
    }
}

/// Partner ids are written into stored metadata and tokens: keep them short and plain.
pub fn partner_id_is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// A configured gateway.
#[derive(Debug, Clone)]
pub struct Partner {
    pub id: String,
    /// SHA-256 of each API key the partner may use: one, or two while a gateway rotates
    /// (old and new both work until the old hash is removed from configuration).
    pub key_hashes: Vec<[u8; 32]>,
    pub scopes: Vec<Scope>,
    pub max_token_ttl: u64,
}

impl Partner {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scope.as_str()))
        }
    }
}

/// All configured partners.
#[derive(Debug, Clone, Default)]
pub struct Partners(Arc<Vec<Partner>>);

impl Partners {
    pub fn new(list: Vec<Partner>) -> Self {
        Partners(Arc::new(list))
    }

    /// The partner one of whose keys hashes to SHA-256(`presented`). Every configured hash of
    /// every partner is compared, each in constant time, so timing reveals neither which
    /// partner or which of its keys matched nor how much of a hash did.
    pub fn authenticate(&self, presented: &[u8]) -> Option<&Partner> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for p in self.0.iter() {
            for h in &p.key_hashes {
                if bool::from(h.ct_eq(&digest)) {
                    found = Some(p);
                }
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Extractor: the authenticated partner of a gateway request.
#[derive(Debug, Clone)]
pub struct Gateway(pub Partner);

/// The bearer credential of `Authorization`, if any.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// The partner a request head authenticates as. Used by the extractor and, before any body
/// is read, by the `Expect: 100-continue` check (`crate::expect`).
pub fn authenticate(partners: &Partners, headers: &HeaderMap) -> Result<Partner, ApiError> {
    let key = bearer(headers)
        .filter(|k| !k.is_empty())
        .ok_or(ApiError::Unauthenticated)?;
    partners
        .authenticate(key)
        .cloned()
        .ok_or(ApiError::Unauthenticated)
}

impl FromRequest for Gateway {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = req
            .app_data::<web::Data<AppState>>()
            .ok_or(ApiError::Internal)
            .and_then(|state| authenticate(&state.settings.partners, req.headers()))
            .inspect(|partner| {
                crate::access::note(req, |n| n.partner = Some(partner.id.clone()));
            })
            .map(Gateway);
        std::future::ready(result)
    }
}

/// Scopes as types, so a handler states what it needs in its signature and cannot forget
/// to check it: `Authorized<needs::Delete>` extracts only for a partner holding `delete`.
pub mod needs {
    use super::Scope;

    /// A scope a handler requires.
    pub trait Needs {
        const SCOPE: Scope;
    }

    pub struct Upload;
    pub struct Token;
    pub struct Delete;
    pub struct Seal;

    impl Needs for Upload {
        const SCOPE: Scope = Scope::Upload;
    }
    impl Needs for Token {
        const SCOPE: Scope = Scope::Token;
    }
    impl Needs for Delete {
        const SCOPE: Scope = Scope::Delete;
    }
    impl Needs for Seal {
        const SCOPE: Scope = Scope::Seal;
    }
}

/// An authenticated partner that holds scope `N` (401 without a valid key, 403 without the
/// scope, both before the handler runs or its body is read).
pub struct Authorized<N: needs::Needs>(pub Partner, std::marker::PhantomData<N>);

impl<N: needs::Needs> Authorized<N> {
    pub fn partner(&self) -> &Partner {
        &self.0
    }

    pub fn into_partner(self) -> Partner {
        self.0
    }
}

impl<N: needs::Needs> FromRequest for Authorized<N> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let result =
            Gateway::from_request(req, payload)
                .into_inner()
                .and_then(|Gateway(partner)| {
                    partner.require(N::SCOPE)?;
                    Ok(Authorized(partner, std::marker::PhantomData))
                });
        std::future::ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticate_by_hash() {
        let p = |id: &str, key: &[u8]| Partner {
            id: id.into(),
            key_hashes: vec![Sha256::digest(key).into()],
            scopes: vec![Scope::Upload],
            max_token_ttl: 60,
        };
        let ps = Partners::new(vec![p("a", b"key-a"), p("b", b"key-b")]);
        assert_eq!(ps.authenticate(b"key-b").map(|p| p.id.as_str()), Some("b"));
        assert!(ps.authenticate(b"key-c").is_none());
        assert!(ps.authenticate(b"").is_none());
    }

    #[test]
    fn two_keys_per_partner() {
        let ps = Partners::new(vec![Partner {
            id: "gw".into(),
            key_hashes: vec![Sha256::digest(b"old").into(), Sha256::digest(b"new").into()],
            scopes: vec![Scope::Upload],
            max_token_ttl: 60,
        }]);
        assert_eq!(ps.authenticate(b"old").map(|p| p.id.as_str()), Some("gw"));
        assert_eq!(ps.authenticate(b"new").map(|p| p.id.as_str()), Some("gw"));
        assert!(ps.authenticate(b"other").is_none());
    }

    #[test]
    fn ids() {
        assert!(partner_id_is_valid("birdychat"));
        assert!(!partner_id_is_valid("Birdy"));
        assert!(!partner_id_is_valid(&"a".repeat(33)));
    }
}
