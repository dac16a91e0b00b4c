//! The pool's signing keys (its JWKS) and the check of an access token.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use paddock_core::identity::IdentityError;
use paddock_core::Timestamp;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Fetches of the JWKS for an unknown `kid` are at most this frequent.
const REFETCH_EVERY: Duration = Duration::from_secs(30);

/// What paddock takes from a verified access token.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub groups: Vec<String>,
}

#[derive(Deserialize)]
struct AccessClaims {
    sub: String,
    token_use: String,
    client_id: String,
    exp: i64,
    #[serde(rename = "cognito:groups", default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: String,
    kty: String,
    n: Option<String>,
    e: Option<String>,
}

/// The cached keys of one pool.
pub struct Keys {
    url: String,
    http: reqwest::Client,
    cache: tokio::sync::RwLock<HashMap<String, DecodingKey>>,
    fetched: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Keys {
    pub fn new(url: String) -> Self {
        Keys {
            url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            cache: tokio::sync::RwLock::new(HashMap::new()),
            fetched: tokio::sync::Mutex::new(None),
        }
    }

    /// The key `kid`, fetching the JWKS when it is not known yet (at most
    /// every 30 s, so garbage `kid`s cannot make paddock hammer Cognito).
    async fn key(&self, kid: &str) -> Result<DecodingKey, IdentityError> {
        if let Some(k) = self.cache.read().await.get(kid) {
            return Ok(k.clone());
        }
        let mut fetched = self.fetched.lock().await;
        if let Some(k) = self.cache.read().await.get(kid) {
            return Ok(k.clone());
        }
        if fetched.is_some_and(|at| at.elapsed() < REFETCH_EVERY) {
            return Err(IdentityError::InvalidToken);
        }
        *fetched = Some(Instant::now());
        let jwks: Jwks = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| IdentityError::Internal(format!("fetching the pool's keys: {e}")))?
            .json()
            .await
            .map_err(|e| IdentityError::Internal(format!("reading the pool's keys: {e}")))?;
        let mut cache = self.cache.write().await;
        for k in jwks.keys.into_iter().filter(|k| k.kty == "RSA") {
            if let (Some(n), Some(e)) = (&k.n, &k.e) {
                if let Ok(key) = DecodingKey::from_rsa_components(n, e) {
                    cache.insert(k.kid, key);
                }
            }
        }
        tracing::info!(keys = cache.len(), url = %self.url, "fetched the Cognito pool's signing keys");
        cache.get(kid).cloned().ok_or(IdentityError::InvalidToken)
    }

    /// Verifies an access token: RS256 by a key of the pool, from
    /// `issuer`, for `client_id`, an access token, not expired at `now`.
    pub async fn verify(
        &self,
        token: &str,
        issuer: &str,
        client_id: &str,
        now: Timestamp,
    ) -> Result<Claims, IdentityError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| IdentityError::InvalidToken)?;
        if header.alg != Algorithm::RS256 {
            return Err(IdentityError::InvalidToken);
        }
        let kid = header.kid.ok_or(IdentityError::InvalidToken)?;
        let key = self.key(&kid).await?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[issuer]);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Checked below against paddock's clock; access tokens have no aud.
        v.validate_exp = false;
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &v)
            .map_err(|_| IdentityError::InvalidToken)?;
        let c = data.claims;
        if c.token_use != "access" || c.client_id != client_id || c.sub.is_empty() {
            return Err(IdentityError::InvalidToken);
        }
        if c.exp <= now.timestamp() {
            return Err(IdentityError::InvalidToken);
        }
        Ok(Claims {
            sub: c.sub,
            groups: c.groups,
        })
    }
}
