-- 002_alert_outbox.sql (SQLite) - migration 2: alerts a notifier could not
-- deliver, kept until a later run delivers them (at least once per notifier).
-- Kept in lockstep with ../postgresql/002_alert_outbox.sql and
-- ../mssql/002_alert_outbox.sql. Applied by the engine in one
-- transaction, statement by statement, like 001_engine.sql.
CREATE TABLE USER_ALERT_OUTBOX (
    OUTBOX_ID INTEGER CONSTRAINT PK_USER_ALERT_OUTBOX PRIMARY KEY AUTOINCREMENT,
    PIPELINE VARCHAR(64) NOT NULL,
    STAGE_ID VARCHAR(64) NOT NULL,
    EVENT VARCHAR(40) NOT NULL,
    PAYLOAD TEXT NOT NULL,
    CREATED_DT TEXT NOT NULL,
    ATTEMPTS INT NOT NULL DEFAULT 0,
    LAST_ERROR VARCHAR(500)
);
CREATE INDEX IX_USER_ALERT_OUTBOX_PIPELINE ON USER_ALERT_OUTBOX (PIPELINE, OUTBOX_ID);
-- The hash of the last version of an applied order that the store changed
-- and that was flagged for a person: the same change is flagged once.
ALTER TABLE USER_ORDER_STAGING ADD COLUMN CHANGED_HASH VARCHAR(64);
-- Claims read their rows back, and renew their leases, by LEASE_TOKEN.
CREATE INDEX IX_USER_ORDER_STAGING_LEASE ON USER_ORDER_STAGING (LEASE_TOKEN);
