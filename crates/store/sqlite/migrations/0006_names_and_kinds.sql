-- Instances get a name of their own (empty for records from before names:
-- the default name is shown), and catalog entries say whether the model is
-- a base model or an instruction-tuned one.
ALTER TABLE instances ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE models ADD COLUMN kind TEXT NOT NULL DEFAULT 'instruct';
