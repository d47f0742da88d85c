-- Read receipts, presence and blocking are forwarded to the owning node like the other commands (issue 14), and
-- finished or expired commands are pruned by age (the index below), so the table stays small.
ALTER TABLE instance_commands DROP CONSTRAINT instance_commands_kind_check;
ALTER TABLE instance_commands ADD CONSTRAINT instance_commands_kind_check
    CHECK (kind IN ('connect', 'restart', 'logout', 'pair_code', 'mark_read', 'presence', 'block'));
CREATE INDEX instance_commands_created_idx ON instance_commands (created_at);
