//! Typed ids. Each id is a newtype over a string so that an instance id can
//! never be passed where a user id is expected; on the wire they are plain
//! strings (`serde(transparent)`).

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new random id: the prefix then 16 lowercase hex digits.
            pub fn generate() -> Self {
                let n: u64 = rand::thread_rng().gen();
                Self(format!("{}{:016x}", $prefix, n))
            }
            /// Wraps an id that came from storage or from a request.
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// A user account.
    UserId,
    "u-"
);
string_id!(
    /// A deployed instance of a model.
    InstanceId,
    "i-"
);
string_id!(
    /// An API key (the public part; the secret is never an id).
    ApiKeyId,
    "k-"
);
string_id!(
    /// A catalog model, named by its Ollama tag (`gemma3:270m`).
    ModelId,
    ""
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_prefix_and_differ() {
        let a = InstanceId::generate();
        let b = InstanceId::generate();
        assert!(a.as_str().starts_with("i-"));
        assert_eq!(a.as_str().len(), 18);
        assert_ne!(a, b);
    }

    #[test]
    fn ids_are_plain_strings_on_the_wire() {
        let id = UserId::new("u-1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"u-1\"");
    }
}
