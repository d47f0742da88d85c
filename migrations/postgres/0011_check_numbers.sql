-- Number checks are forwarded to the owning node like the other commands (issue 20): the owner's session asks
-- WhatsApp, and its answer (JSON) is the command's result.
ALTER TABLE instance_commands DROP CONSTRAINT instance_commands_kind_check;
ALTER TABLE instance_commands ADD CONSTRAINT instance_commands_kind_check
    CHECK (kind IN ('connect', 'restart', 'logout', 'pair_code', 'mark_read', 'presence', 'block', 'check_numbers'));
