//! Assignment rules: the server assigns an OS to new machines that match one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::extract::{ApiJson, IdPath};
use crate::error::{ErrorBody, Result};
use crate::machines::Machines;
use crate::machines::rules::{Rule, RuleInput};

/// Every rule, in the order they are tried (priority, then age).
#[utoipa::path(
    get, path = "/api/v1/rules", tag = "rules",
    responses((status = 200, description = "All rules", body = [Rule]))
)]
pub async fn list(State(machines): State<Machines>) -> Result<Json<Vec<Rule>>> {
    Ok(Json(machines.rules().await?))
}

/// Add a rule. From then on, a newly registered machine that matches it (and no rule
/// before it) is assigned its OS on the disk it picks; the event names the rule.
#[utoipa::path(
    post, path = "/api/v1/rules", tag = "rules",
    request_body = RuleInput,
    responses(
        (status = 201, description = "Created", body = Rule),
        (status = 409, description = "Name taken, or too many rules", body = ErrorBody),
        (status = 422, description = "Invalid value (the field is named)", body = ErrorBody),
    )
)]
pub async fn create(
    State(machines): State<Machines>,
    ApiJson(body): ApiJson<RuleInput>,
) -> Result<(StatusCode, Json<Rule>)> {
    Ok((StatusCode::CREATED, Json(machines.create_rule(body).await?)))
}

/// Delete a rule (machines it assigned keep their assignment).
#[utoipa::path(
    delete, path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = i64, Path, description = "Rule id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such rule", body = ErrorBody),
    )
)]
pub async fn delete(State(machines): State<Machines>, IdPath(id): IdPath) -> Result<StatusCode> {
    machines.delete_rule(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
