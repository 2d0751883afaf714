-- 004_records.sql (SQLite) - migration 4: keyed records that are not orders
-- (ABI 1.5: a source stages them with emit_records, CPB_RECORD stages push
-- them), e.g. the stock pipeline's one record per SKU. Kept in lockstep with
-- the other dialects' 004_records.sql. Applied in one transaction.
-- One row per (pipeline, kind, key): the payload last staged for it, its
-- hash (a payload staged again unchanged is not queued again), and where it
-- stands: PENDING (due at NEXT_ATTEMPT_DT, claimed through the lease
-- columns like an order), DONE (the world matches PAYLOAD) or DEAD (given
-- up: LAST_ERROR_CODE says why; queued again when its payload changes).
-- RESULT is what its stages keep about it between runs (JSON object).
CREATE TABLE USER_RECORD_STAGING (
    RECORD_ID INTEGER CONSTRAINT PK_USER_RECORD_STAGING PRIMARY KEY AUTOINCREMENT,
    PIPELINE VARCHAR(64) NOT NULL,
    KIND VARCHAR(32) NOT NULL,
    REC_KEY VARCHAR(100) NOT NULL,
    SOURCE VARCHAR(64) NOT NULL,
    PAYLOAD TEXT NOT NULL,
    PAYLOAD_HASH VARCHAR(64) NOT NULL,
    STATUS VARCHAR(10) NOT NULL,
    ATTEMPTS INT NOT NULL DEFAULT 0,
    NEXT_ATTEMPT_DT TEXT NOT NULL,
    LEASE_OWNER VARCHAR(100),
    LEASE_TOKEN VARCHAR(36),
    LEASE_UNTIL TEXT,
    RESULT TEXT,
    LAST_ERROR_CODE VARCHAR(64),
    LAST_ERROR VARCHAR(500),
    CREATED_DT TEXT NOT NULL,
    UPDATED_DT TEXT NOT NULL,
    DONE_DT TEXT,
    CONSTRAINT UQ_USER_RECORD_STAGING_KEY UNIQUE (PIPELINE, KIND, REC_KEY),
    CONSTRAINT CK_USER_RECORD_STAGING_STATUS CHECK (STATUS IN ('PENDING', 'DONE', 'DEAD'))
);
-- Claims look for due records of a pipeline, and read them back by token.
CREATE INDEX IX_USER_RECORD_STAGING_DUE ON USER_RECORD_STAGING (PIPELINE, STATUS, NEXT_ATTEMPT_DT);
CREATE INDEX IX_USER_RECORD_STAGING_LEASE ON USER_RECORD_STAGING (LEASE_TOKEN);
-- The audit trail of each record: done (MESSAGE: what was made true),
-- retry, dead, and requeue (a person asked for it again).
CREATE TABLE USER_RECORD_EVENT (
    EVENT_ID INTEGER CONSTRAINT PK_USER_RECORD_EVENT PRIMARY KEY AUTOINCREMENT,
    RECORD_ID BIGINT NOT NULL,
    RUN_ID VARCHAR(36),
    EVENT_DT TEXT NOT NULL,
    KIND VARCHAR(12) NOT NULL,
    STAGE_ID VARCHAR(64),
    CODE VARCHAR(64),
    MESSAGE VARCHAR(1000),
    CONSTRAINT FK_USER_RECORD_EVENT_REC FOREIGN KEY (RECORD_ID)
        REFERENCES USER_RECORD_STAGING (RECORD_ID) ON DELETE CASCADE
);
CREATE INDEX IX_USER_RECORD_EVENT_REC ON USER_RECORD_EVENT (RECORD_ID, EVENT_ID);
