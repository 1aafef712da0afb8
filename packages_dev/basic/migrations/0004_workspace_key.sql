-- A unique (workspace_id, id), so that other tables reference a note together with its
-- workspace, and a row can never point at another workspace's note.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'uq_ydtb_notes_workspace_id_id') THEN
        ALTER TABLE ydtb_notes
            ADD CONSTRAINT uq_ydtb_notes_workspace_id_id UNIQUE (workspace_id, id);
    END IF;
END $$;
