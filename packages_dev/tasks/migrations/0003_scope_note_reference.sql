-- A task's note is in the task's workspace: the key includes workspace_id, and deleting
-- a note sets only note_id to null (PostgreSQL 15+), never workspace_id.
ALTER TABLE ydtb_tasks DROP CONSTRAINT IF EXISTS fk_ydtb_tasks_note_id_ydtb_notes;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'fk_ydtb_tasks_workspace_id_ydtb_notes') THEN
        ALTER TABLE ydtb_tasks
            ADD CONSTRAINT fk_ydtb_tasks_workspace_id_ydtb_notes
            FOREIGN KEY (workspace_id, note_id) REFERENCES ydtb_notes (workspace_id, id)
            ON DELETE SET NULL (note_id);
    END IF;
END $$;
