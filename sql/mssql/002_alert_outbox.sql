-- 002_alert_outbox.sql (SQL Server) - migration 2: alerts a notifier could not
-- deliver, kept until a later run delivers them (at least once per notifier).
-- Kept in lockstep with ../sqlite/002_alert_outbox.sql and
-- ../postgresql/002_alert_outbox.sql. Applied by the engine in one
-- transaction, statement by statement, like 001_engine.sql.
CREATE TABLE dbo.USER_ALERT_OUTBOX (
    OUTBOX_ID BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT PK_USER_ALERT_OUTBOX PRIMARY KEY,
    PIPELINE NVARCHAR(64) NOT NULL,
    STAGE_ID NVARCHAR(64) NOT NULL,
    EVENT NVARCHAR(40) NOT NULL,
    PAYLOAD NVARCHAR(MAX) NOT NULL,
    CREATED_DT DATETIME2(3) NOT NULL,
    ATTEMPTS INT NOT NULL CONSTRAINT DF_USER_ALERT_OUTBOX_ATTEMPTS DEFAULT 0,
    LAST_ERROR NVARCHAR(500)
);
CREATE INDEX IX_USER_ALERT_OUTBOX_PIPELINE ON dbo.USER_ALERT_OUTBOX (PIPELINE, OUTBOX_ID);
-- The hash of the last version of an applied order that the store changed
-- and that was flagged for a person: the same change is flagged once.
ALTER TABLE dbo.USER_ORDER_STAGING ADD CHANGED_HASH NVARCHAR(64);
-- Claims read their rows back, and renew their leases, by LEASE_TOKEN.
CREATE INDEX IX_USER_ORDER_STAGING_LEASE ON dbo.USER_ORDER_STAGING (LEASE_TOKEN);
