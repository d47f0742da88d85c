-- Outbound messages get their WhatsApp id when they are accepted, not when a send attempt happens, so a message
-- sent again after a crash carries the same id and the recipient's WhatsApp drops the copy. Messages queued
-- before this version have none yet: give each one now, in WhatsApp Web's shape ("3EB0" + 18 upper-case hex).
UPDATE messages
SET wa_message_id = '3EB0' || hex(randomblob(9))
WHERE direction = 'outbound' AND status = 'queued' AND wa_message_id IS NULL;
