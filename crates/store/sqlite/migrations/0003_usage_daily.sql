-- Usage per user, UTC day and model, kept up to date with every batch of
-- records: what the usage queries read, so they no longer load every
-- request of the period. The raw records stay, for export and audit, but
-- lose their two indexes: each request's row is then one append to one
-- B-tree, which is most of what metering a request costs.
CREATE TABLE usage_daily (
    user_id           TEXT NOT NULL,
    day               TEXT NOT NULL,
    model_id          TEXT NOT NULL,
    requests          INTEGER NOT NULL,
    errors            INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    PRIMARY KEY (user_id, day, model_id)
) WITHOUT ROWID;
CREATE INDEX usage_daily_day ON usage_daily (day);
INSERT INTO usage_daily
SELECT user_id, date(at / 1000000000, 'unixepoch'), model_id,
       COUNT(*), SUM(status >= 400), SUM(prompt_tokens), SUM(completion_tokens)
FROM usage_records
GROUP BY 1, 2, 3;
DROP INDEX usage_records_user_at;
DROP INDEX usage_records_at;
