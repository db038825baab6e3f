//! `GET` and `DELETE /v1/media/{id}`: metadata and deletion for the owning gateway.

use actix_web::{HttpResponse, web};
use object_store::ObjectStoreExt;

use crate::app::AppState;
use crate::auth::{Authorized, Gateway, Partner, needs};
use crate::error::{ApiError, StoreError};
use crate::ingest::{MediaInfo, id_is_valid, now_unix};
use crate::storage::{Head, media_path};

/// The caller's live media, or the error a stranger would get: another partner's media is
/// indistinguishable from none (404, not 403).
pub async fn owned(state: &AppState, partner: &Partner, id: &str) -> Result<Head, ApiError> {
    if !id_is_valid(id) {
        return Err(ApiError::MediaNotFound);
    }
    let head = state
        .ingest
        .lookup(&partner.id, id)
        .await?
        .ok_or(ApiError::MediaNotFound)?;
    if head.header.meta.expires <= now_unix() {
        return Err(ApiError::MediaExpired);
    }
    Ok(head)
}

pub async fn get(
    state: web::Data<AppState>,
    gw: Gateway,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let head = owned(&state, &gw.0, &id).await?;
    Ok(HttpResponse::Ok().json(MediaInfo::from_head(&id, &head)?))
}

pub async fn delete(
    state: web::Data<AppState>,
    gw: Authorized<needs::Delete>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !id_is_valid(&id) {
        return Err(ApiError::MediaNotFound);
    }
    // Expired media can be deleted too: the gateway is cleaning up.
    state
        .ingest
        .lookup(&gw.0.id, &id)
        .await?
        .ok_or(ApiError::MediaNotFound)?;
    match state.store.delete(&media_path(&id)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {
            Ok(HttpResponse::NoContent().finish())
        }
        Err(e) => Err(StoreError::from(e).into()),
    }
}
