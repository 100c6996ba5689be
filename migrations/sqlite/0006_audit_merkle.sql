-- SQLite override of migrations/postgres/0006_audit_merkle.sql: BIGINT keys stay BIGINT here
-- (not INTEGER, which would make leaf_index the rowid), as applied since this version.
-- The tamper-evident log (issue 13): every stored event is one leaf of an RFC 9162 Merkle
-- tree in log order. Leaf index = ordinal in log order; the position (notification id)
-- may have gaps. Level-0 nodes are the leaf hashes; lg_merkle_nodes holds every complete
-- interior node (level >= 1, covering leaves [node_index << level, (node_index + 1) << level)),
-- enough for any inclusion or consistency proof in O(log^2 n) lookups.
CREATE TABLE IF NOT EXISTS lg_merkle_leaves (
    leaf_index BIGINT PRIMARY KEY,
    position BIGINT NOT NULL UNIQUE,
    originator_id TEXT NOT NULL,
    originator_version BIGINT NOT NULL,
    request_id TEXT,
    leaf_hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS lg_merkle_leaves_originator ON lg_merkle_leaves (originator_id);
CREATE INDEX IF NOT EXISTS lg_merkle_leaves_request ON lg_merkle_leaves (request_id);
CREATE TABLE IF NOT EXISTS lg_merkle_nodes (
    level INTEGER NOT NULL,
    node_index BIGINT NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, node_index)
);
-- One row: how far the tree has hashed the log (locked while appending).
CREATE TABLE IF NOT EXISTS lg_merkle_state (
    log TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    last_position BIGINT NOT NULL
);
INSERT INTO lg_merkle_state (log, size, last_position) VALUES ('events', 0, 0) ON CONFLICT (log) DO NOTHING;
-- Every signed checkpoint ever taken (C2SP tlog-checkpoint notes), each consistent with the one before.
CREATE TABLE IF NOT EXISTS lg_audit_checkpoints (
    size BIGINT PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    vkey TEXT NOT NULL,
    created_at TEXT NOT NULL
);
