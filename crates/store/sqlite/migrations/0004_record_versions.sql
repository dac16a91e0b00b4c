-- Users and catalog entries get an optimistic-concurrency version, as
-- instances have: an update writes only over the version it was read at,
-- so that two edits made from one read (a password change and an admin's
-- disable, two admins' catalog edits) cannot silently undo each other.
ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE models ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
