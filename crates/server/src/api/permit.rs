//! The two ways an API handler reaches admin operations, both through
//! [`Control::as_admin`]: [`admin`] (403 for anyone else) and
//! [`admin_or_self`] (`?all=true` listings).

use paddock_control::{AdminOps, Control};
use paddock_core::user::Principal;
use paddock_gateway::error::ApiError;

/// The admin operations for the caller, or 403: the one way the API
/// reaches them.
pub(crate) fn admin<'a>(c: &'a Control, p: &'a Principal) -> Result<AdminOps<'a>, ApiError> {
    c.as_admin(p)
        .ok_or_else(|| ApiError::Forbidden("this needs an administrator".into()))
}

/// For `?all=true` listings: the admin operations when an admin asks for
/// everyone's records, else `None` (the caller's own; a plain user asking
/// for all is shown their own, as before).
pub(crate) fn admin_or_self<'a>(
    c: &'a Control,
    p: &'a Principal,
    all: bool,
) -> Option<AdminOps<'a>> {
    if all {
        c.as_admin(p)
    } else {
        None
    }
}
