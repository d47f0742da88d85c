//! `GET /problems/{slug}`: what each problem type means, so a `type` URI leads somewhere useful.

use axum::http::header;
use axum::response::IntoResponse;

use crate::error::{ApiError, ProblemBody, ProblemType};
use crate::extract::Path;

/// What a problem type means: its title, status and description, as Markdown.
#[utoipa::path(get, path = "/problems/{slug}", tag = "problems", params(("slug" = String, Path, example = "not-found")),
    responses((status = 200, content_type = "text/markdown", body = String, description = "the problem type, described"),
    (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn describe(Path(slug): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let problem = ProblemType::by_slug(&slug).ok_or_else(|| ApiError::not_found("problem type"))?;
    let text = format!(
        "# {}\n\nType: `{}`\nStatus: {}\n\n{}\n",
        problem.title,
        problem.type_uri(),
        problem.status,
        problem.description
    );
    Ok(([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], text))
}
