-- Tasks may have a due date; open tasks are listed soonest due first.
ALTER TABLE ydtb_tasks
    ADD COLUMN IF NOT EXISTS due_at timestamptz;

CREATE INDEX IF NOT EXISTS ix_ydtb_tasks_workspace_id_done_due_at
    ON ydtb_tasks (workspace_id, done, due_at);
