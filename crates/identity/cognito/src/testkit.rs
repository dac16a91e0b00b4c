//! A user pool as paddock expects one, made on an emulator for tests:
//! email as the username, a password policy, an app client with the
//! password and refresh flows.

use aws_sdk_cognitoidentityprovider::types::{
    ExplicitAuthFlowsType, PasswordPolicyType, UserPoolPolicyType, UsernameAttributeType,
};
use aws_sdk_cognitoidentityprovider::Client;

/// Makes a pool and its app client; returns (pool id, client id).
pub async fn create_pool(sdk: &aws_types::SdkConfig, name: &str) -> (String, String) {
    let client = Client::new(sdk);
    let pool = client
        .create_user_pool()
        .pool_name(name)
        .username_attributes(UsernameAttributeType::Email)
        .policies(
            UserPoolPolicyType::builder()
                .password_policy(
                    PasswordPolicyType::builder()
                        .minimum_length(8)
                        .require_lowercase(true)
                        .require_uppercase(true)
                        .require_numbers(true)
                        .require_symbols(true)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("create a user pool");
    let pool_id = pool
        .user_pool()
        .and_then(|p| p.id())
        .expect("a pool id")
        .to_owned();
    let app = client
        .create_user_pool_client()
        .user_pool_id(&pool_id)
        .client_name("paddock")
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
        .send()
        .await
        .expect("create an app client");
    let client_id = app
        .user_pool_client()
        .and_then(|c| c.client_id())
        .expect("a client id")
        .to_owned();
    (pool_id, client_id)
}
