-- Named leases: which control-plane replica runs the reconciler. A lease is
-- taken when it is free, expired, or already the taker's.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until_ns INTEGER NOT NULL
);
