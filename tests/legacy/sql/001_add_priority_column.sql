-- The statement that ashfaq1192/hackathon-todo-fullstack's hand-run script
-- phase-2-fullstack/backend/migrations/001_add_priority_column.py applies (also copied to
-- phase-3-chatbot/backend/migrations/): priority as a varchar, every old row 'medium'.
ALTER TABLE tasks ADD COLUMN priority varchar(10) NOT NULL DEFAULT 'medium';
