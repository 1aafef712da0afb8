-- Pinned notes are listed first.
ALTER TABLE ydtb_notes
    ADD COLUMN IF NOT EXISTS pinned boolean NOT NULL DEFAULT false;

CREATE INDEX IF NOT EXISTS ix_ydtb_notes_workspace_id_pinned
    ON ydtb_notes (workspace_id, pinned);
