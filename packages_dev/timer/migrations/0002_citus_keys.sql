-- workspace_id joins the primary key: Citus enforces a key on a table distributed by
-- workspace_id only with workspace_id in it (`check --citus`, Y701).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'pk_ydtb_timer_entries'
                   AND conrelid = 'ydtb_timer_entries'::regclass AND cardinality(conkey) = 2) THEN
        ALTER TABLE ydtb_timer_entries DROP CONSTRAINT IF EXISTS pk_ydtb_timer_entries;
        ALTER TABLE ydtb_timer_entries
            ADD CONSTRAINT pk_ydtb_timer_entries PRIMARY KEY (workspace_id, id);
    END IF;
END $$;
