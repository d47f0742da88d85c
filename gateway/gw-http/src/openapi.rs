//! The OpenAPI 3.1 document, generated from the handlers' annotations. Every endpoint must be listed here; a test
//! checks the router and the document agree.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto::*;
use crate::error::{FieldProblem, ProblemBody};
use crate::routes::plugins::{
    BindPluginRequest, CreatePluginRequest, PluginBindingDto, PluginDto, PluginLogDto, PluginVersionDto,
    UpdateBindingRequest,
};
use crate::routes::webhooks::{
    CreateWebhookRequest, ReplayRangeRequest, ReplayedDto, RotateWebhookSecretRequest, TestFireDto,
    UpdateWebhookRequest, WebhookWithSecretDto,
};
use crate::routes::{api_keys, audit, auth, health, instances, plugins, subscriptions, usage, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(title = "WhatsApp API gateway", description = "Multi-tenant WhatsApp API. Errors are RFC 9457 problem+json; see /problems/{slug}."),
    paths(
        health::healthz, health::readyz,
        auth::login, auth::refresh, auth::logout, auth::me,
        subscriptions::create, subscriptions::list, subscriptions::get, subscriptions::update,
        subscriptions::activate, subscriptions::deactivate,
        subscriptions::create_user, subscriptions::list_users,
        subscriptions::deactivate_user, subscriptions::activate_user, subscriptions::reset_password,
        instances::create, instances::list, instances::get, instances::update, instances::delete, instances::status,
        api_keys::create, api_keys::list, api_keys::get, api_keys::revoke, api_keys::rotate, api_keys::delete,
        audit::list,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::rotate_secret, webhooks::test, webhooks::deliveries, webhooks::delivery, webhooks::replay,
        webhooks::replay_range,
        usage::subscription_usage, usage::instance_usage, usage::instance_stats, usage::key_self,
        plugins::create, plugins::list, plugins::get, plugins::delete,
        plugins::upload, plugins::list_versions, plugins::activate,
        plugins::bind, plugins::list_bindings, plugins::get_binding, plugins::update_binding, plugins::unbind,
        plugins::logs,
    ),
    components(schemas(ProblemBody, FieldProblem, SessionDto, UserDto, SubscriptionDto, LimitsDto, LimitOverridesDto,
        InstanceDto, InstanceStatusDto, AuditEntryDto, ApiKeyDto, CreatedApiKeyDto, RotatedApiKeyDto,
        WebhookDto, WebhookDeliveryDto, WebhookAttemptDto, WebhookWithSecretDto, TestFireDto, ReplayedDto,
        CreateWebhookRequest, UpdateWebhookRequest, RotateWebhookSecretRequest, ReplayRangeRequest,
        PluginDto, PluginVersionDto, PluginBindingDto, PluginLogDto, CreatePluginRequest, BindPluginRequest,
        UpdateBindingRequest)),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "Sign-in and tokens"),
        (name = "subscriptions", description = "Tenants and their tiers (operators)"),
        (name = "users", description = "Users of a subscription"),
        (name = "instances", description = "WhatsApp accounts"),
        (name = "api-keys", description = "An instance's API keys (shown once)"),
        (name = "audit", description = "Who did what"),
        (name = "webhooks", description = "An instance's webhook endpoints, deliveries and replays"),
        (name = "usage", description = "Usage per month, daily statistics, the calling key"),
        (name = "plugins", description = "Tenants' WebAssembly plugins: versions, bindings, errors, logs"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::new("x-api-key"),
            )),
        );
    }
}
