-- Ready for Citus (`check --citus`): workspace_id joins the primary key (Y701), and the
-- key to a note no longer sets note_id to null when the note is deleted, which Citus
-- refuses of a key holding workspace_id even when it names the columns it sets (Y705).
-- Deleting a note that tasks point at is refused until the application detaches them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'pk_ydtb_tasks'
                   AND conrelid = 'ydtb_tasks'::regclass AND cardinality(conkey) = 2) THEN
        ALTER TABLE ydtb_tasks DROP CONSTRAINT IF EXISTS pk_ydtb_tasks;
        ALTER TABLE ydtb_tasks ADD CONSTRAINT pk_ydtb_tasks PRIMARY KEY (workspace_id, id);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'fk_ydtb_tasks_workspace_id_ydtb_notes'
               AND conrelid = 'ydtb_tasks'::regclass AND confdeltype <> 'a') THEN
        ALTER TABLE ydtb_tasks DROP CONSTRAINT fk_ydtb_tasks_workspace_id_ydtb_notes;
        ALTER TABLE ydtb_tasks
            ADD CONSTRAINT fk_ydtb_tasks_workspace_id_ydtb_notes
            FOREIGN KEY (workspace_id, note_id) REFERENCES ydtb_notes (workspace_id, id);
    END IF;
END $$;
