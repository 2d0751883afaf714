-- 004_records.sql (SQL Server) - migration 4: keyed records that are not orders
-- (ABI 1.5: a source stages them with emit_records, CPB_RECORD stages push
-- them), e.g. the stock pipeline's one record per SKU. Kept in lockstep with
-- the other dialects' 004_records.sql. Applied in one transaction.
-- One row per (pipeline, kind, key): the payload last staged for it, its
-- hash (a payload staged again unchanged is not queued again), and where it
-- stands: PENDING (due at NEXT_ATTEMPT_DT, claimed through the lease
-- columns like an order), DONE (the world matches PAYLOAD) or DEAD (given
-- up: LAST_ERROR_CODE says why; queued again when its payload changes).
-- RESULT is what its stages keep about it between runs (JSON object).
CREATE TABLE dbo.USER_RECORD_STAGING (
    RECORD_ID BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT PK_USER_RECORD_STAGING PRIMARY KEY,
    PIPELINE NVARCHAR(64) NOT NULL,
    KIND NVARCHAR(32) NOT NULL,
    REC_KEY NVARCHAR(100) NOT NULL,
    SOURCE NVARCHAR(64) NOT NULL,
    PAYLOAD NVARCHAR(MAX) NOT NULL,
    PAYLOAD_HASH NVARCHAR(64) NOT NULL,
    STATUS NVARCHAR(10) NOT NULL,
    ATTEMPTS INT NOT NULL CONSTRAINT DF_USER_RECORD_STAGING_ATTEMPTS DEFAULT 0,
    NEXT_ATTEMPT_DT DATETIME2(3) NOT NULL,
    LEASE_OWNER NVARCHAR(100),
    LEASE_TOKEN NVARCHAR(36),
    LEASE_UNTIL DATETIME2(3),
    RESULT NVARCHAR(MAX),
    LAST_ERROR_CODE NVARCHAR(64),
    LAST_ERROR NVARCHAR(500),
    CREATED_DT DATETIME2(3) NOT NULL,
    UPDATED_DT DATETIME2(3) NOT NULL,
    DONE_DT DATETIME2(3),
    CONSTRAINT UQ_USER_RECORD_STAGING_KEY UNIQUE (PIPELINE, KIND, REC_KEY),
    CONSTRAINT CK_USER_RECORD_STAGING_STATUS CHECK (STATUS IN ('PENDING', 'DONE', 'DEAD'))
);
-- Claims look for due records of a pipeline, and read them back by token.
CREATE INDEX IX_USER_RECORD_STAGING_DUE ON dbo.USER_RECORD_STAGING (PIPELINE, STATUS, NEXT_ATTEMPT_DT);
CREATE INDEX IX_USER_RECORD_STAGING_LEASE ON dbo.USER_RECORD_STAGING (LEASE_TOKEN);
-- The audit trail of each record: done (MESSAGE: what was made true),
-- retry, dead, and requeue (a person asked for it again).
CREATE TABLE dbo.USER_RECORD_EVENT (
    EVENT_ID BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT PK_USER_RECORD_EVENT PRIMARY KEY,
    RECORD_ID BIGINT NOT NULL,
    RUN_ID NVARCHAR(36),
    EVENT_DT DATETIME2(3) NOT NULL,
    KIND NVARCHAR(12) NOT NULL,
    STAGE_ID NVARCHAR(64),
    CODE NVARCHAR(64),
    MESSAGE NVARCHAR(1000),
    CONSTRAINT FK_USER_RECORD_EVENT_REC FOREIGN KEY (RECORD_ID)
        REFERENCES dbo.USER_RECORD_STAGING (RECORD_ID) ON DELETE CASCADE
);
CREATE INDEX IX_USER_RECORD_EVENT_REC ON dbo.USER_RECORD_EVENT (RECORD_ID, EVENT_ID);
