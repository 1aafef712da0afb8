-- workspace_id joins the primary key: Citus enforces a key on a table distributed by
-- workspace_id only with workspace_id in it (`check --citus`, Y701). Every key into
-- ydtb_notes already names both columns, onto uq_ydtb_notes_workspace_id_id.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'pk_ydtb_notes'
                   AND conrelid = 'ydtb_notes'::regclass AND cardinality(conkey) = 2) THEN
        ALTER TABLE ydtb_notes DROP CONSTRAINT IF EXISTS pk_ydtb_notes;
        ALTER TABLE ydtb_notes ADD CONSTRAINT pk_ydtb_notes PRIMARY KEY (workspace_id, id);
    END IF;
END $$;
