//! [`ApiError`]: the one type that becomes an HTTP error response.
//!
//! Every error leaves the server as `{"error": {"code", "message"}}` with a
//! status that says whose fault it is. Bad input is always 4xx; 5xx means
//! paddock itself failed, and its details go to the log, not the client.
//! Also owns [`Json`], the body extractor that turns parser failures into
//! 400/413/415 in that shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::FromRequest;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use paddock_control::error::FieldError;
use paddock_control::Error as ControlError;
use paddock_core::identity::IdentityError;
use paddock_core::store::StoreError;
use serde::Serialize;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request (bad JSON, wrong types).
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed but unacceptable; names the field and what to change.
    #[error("{0}")]
    Validation(String),
    /// Several unacceptable fields, every one of them.
    #[error("{}", ControlError::Fields(.0.clone()))]
    Fields(Vec<FieldError>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    #[error("{message}")]
    Unavailable { message: String, retry_after: u64 },
    /// An upstream model server failed.
    #[error("{0}")]
    BadGateway(String),
    /// paddock's own failure; the detail is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: String,
    /// 422 only: every unacceptable field and what to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<FieldError>>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) | ApiError::Fields(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Validation(_) | ApiError::Fields(_) => "validation_failed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::BadGateway(_) => "bad_gateway",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The response body: `{"error": {"code", "message"}}`, and for 422
    /// `fields`: `[{field, message}]`, one per unacceptable field.
    pub fn json_body(&self) -> Vec<u8> {
        let fields = match self {
            ApiError::Validation(m) => Some(vec![FieldError::from_message(m)]),
            ApiError::Fields(list) => Some(list.clone()),
            _ => None,
        };
        let body = Body {
            error: Inner {
                code: self.code(),
                message: self.to_string(),
                fields,
            },
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    pub fn validation(msg: impl Into<String>) -> Self {
        ApiError::Validation(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError::NotFound(msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let mut resp = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.json_body(),
        )
            .into_response();
        if let ApiError::RequestTimeout(_) = &self {
            // The rest of the request is not coming: the connection ends.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ApiError::TooManyRequests { retry_after, .. }
        | ApiError::Unavailable { retry_after, .. } = &self
        {
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// Each kind of control error has one status.
impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Malformed(m) => ApiError::BadRequest(m),
            ControlError::Invalid(m) => ApiError::Validation(m),
            ControlError::Fields(list) => ApiError::Fields(list),
            ControlError::Unauthenticated(m) => ApiError::Unauthorized(m),
            ControlError::Forbidden(m) => ApiError::Forbidden(m),
            ControlError::NotFound(m) => ApiError::NotFound(m),
            ControlError::Conflict(m) => ApiError::Conflict(m),
            ControlError::Throttled {
                message,
                retry_after,
            } => ApiError::TooManyRequests {
                message,
                retry_after,
            },
            ControlError::Unavailable {
                message,
                retry_after,
            } => ApiError::Unavailable {
                message,
                retry_after,
            },
            ControlError::Upstream(m) => ApiError::BadGateway(m),
            ControlError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ControlError::from(e).into()
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        ControlError::from(e).into()
    }
}

/// A JSON body whose rejections are [`ApiError`]s: malformed JSON is 400
/// with the parser's message, a body over the limit 413, a missing
/// `Content-Type: application/json` 415.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

/// The error for a request body that could not be read: 413 when it is
/// over the limit, 408 when it did not arrive in time, else 400 saying
/// what was wrong with it (a bad chunk size, say).
pub fn body_error(e: &(dyn std::error::Error + 'static)) -> ApiError {
    let mut cause = Some(e);
    let mut innermost = e;
    while let Some(err) = cause {
        if err.is::<http_body_util::LengthLimitError>() {
            return ApiError::PayloadTooLarge(
                "the request body is larger than the server accepts".into(),
            );
        }
        if err.is::<crate::client_io::BodyTimedOut>() {
            return ApiError::RequestTimeout(format!("{err}; send it faster"));
        }
        innermost = err;
        cause = err.source();
    }
    ApiError::BadRequest(format!("the request body could not be read: {innermost}"))
}

/// Maps axum's JSON rejection onto our error shape.
pub fn json_rejection(rej: JsonRejection) -> ApiError {
    let status = rej.status();
    if let JsonRejection::BytesRejection(e) = &rej {
        if status != StatusCode::PAYLOAD_TOO_LARGE {
            return body_error(e);
        }
    }
    let text = rej.body_text();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("the request body is larger than the server accepts".into())
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
            "send the body as JSON with `Content-Type: application/json`".into(),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Validation(text),
        _ => ApiError::BadRequest(text),
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
