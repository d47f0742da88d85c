//! `GET /problems/{slug}`: what each problem type means, so a `type` URI leads somewhere useful.

use axum::http::header;
use axum::response::IntoResponse;

use crate::error::{ApiError, ProblemType};
use crate::extract::Path;

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
