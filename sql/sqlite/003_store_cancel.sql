-- 003_store_cancel.sql (SQLite) - migration 3: an applied order the store
-- cancelled, fully refunded or removed, waiting for the pipeline's
-- run.store_cancel policy (flag it for a person, or roll it back). Kept in
-- lockstep with the other dialects' 003_store_cancel.sql.
-- STORE_CANCELLED = 1 from the staging of the store's change to the run
-- that applies the policy; the order also has CHANGED_AFTER_APPLY = 1.
ALTER TABLE USER_ORDER_STAGING ADD COLUMN STORE_CANCELLED SMALLINT NOT NULL DEFAULT 0;
-- Each run looks for them: an index, so that the look costs nothing with
-- many applied orders.
CREATE INDEX IX_USER_ORDER_STAGING_STORE_CANCELLED ON USER_ORDER_STAGING (STORE_CANCELLED);
