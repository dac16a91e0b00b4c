//! The OpenAPI document: generated from the handlers' `#[utoipa::path]`
//! annotations and the typed inputs and views they take and answer, and
//! registered with the router in one step ([`super::router`]), so a route
//! is served exactly when it is documented.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error: `{error: {code, message}}`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct Error {
    error: ErrorDetail,
}

/// The code is stable; the message says what to change.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    #[schema(example = "validation_failed")]
    code: String,
    message: String,
}

/// The document's frame: title, security scheme, the error schema. The
/// paths are added by the router as it registers them.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "paddock",
        description = "Run Ollama-compatible LLM instances on your own compute. Management API, Ollama and OpenAI gateway."
    ),
    components(schemas(Error, ErrorDetail)),
    modifiers(&Bearer),
    security(("bearer" = [])),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "catalog", description = "Models and compute sizes"),
        (name = "instances", description = "Deployed models"),
        (name = "keys", description = "API keys"),
        (name = "usage", description = "Tokens and cost"),
        (name = "admin", description = "Users (administrators only)"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "an access token from /api/auth/login or an API key (pdk_...)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every operation can answer bad input or a refusal with [`Error`].
/// Applied to the finished document, once the router has added the paths.
pub(crate) struct Errors;

impl Modify for Errors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error = ResponseBuilder::new()
            .description("bad input or not allowed")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Error")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                op.responses
                    .responses
                    .entry("4XX".into())
                    .or_insert_with(|| error.clone().into());
            }
        }
    }
}
