//! Gateway authentication: bearer API keys matched by SHA-256 in constant time, and scopes.

use std::sync::Arc;

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
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
    pub key_sha256: [u8; 32],
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

    /// The partner whose key hashes to SHA-256(`presented`). Every configured hash is compared,
    /// each in constant time, so timing reveals neither which partner matched nor how much of
    /// a hash did.
    pub fn authenticate(&self, presented: &[u8]) -> Option<&Partner> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for p in self.0.iter() {
            if bool::from(p.key_sha256.ct_eq(&digest)) {
                found = Some(p);
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

fn bearer(req: &HttpRequest) -> Option<&[u8]> {
    let value = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

impl FromRequest for Gateway {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = (|| {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or(ApiError::Internal)?;
            let key = bearer(req)
                .filter(|k| !k.is_empty())
                .ok_or(ApiError::Unauthenticated)?;
            let partner = state
                .settings
                .partners
                .authenticate(key)
                .cloned()
                .ok_or(ApiError::Unauthenticated)?;
            crate::access::note(req, |n| n.partner = Some(partner.id.clone()));
            Ok(Gateway(partner))
        })();
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
            key_sha256: Sha256::digest(key).into(),
            scopes: vec![Scope::Upload],
            max_token_ttl: 60,
        };
        let ps = Partners::new(vec![p("a", b"key-a"), p("b", b"key-b")]);
        assert_eq!(ps.authenticate(b"key-b").map(|p| p.id.as_str()), Some("b"));
        assert!(ps.authenticate(b"key-c").is_none());
        assert!(ps.authenticate(b"").is_none());
    }

    #[test]
    fn ids() {
        assert!(partner_id_is_valid("birdychat"));
        assert!(!partner_id_is_valid("Birdy"));
        assert!(!partner_id_is_valid(&"a".repeat(33)));
    }
}
